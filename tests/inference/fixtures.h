// Fixture files from shared/ that several engine tests read, and loading a model on a given backend.
#pragma once

#include <fstream>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "inference/model.h"

namespace inference::test {

// The real 260K-parameter llama model (F32) the CPU engine is checked against.
inline const std::string kStoriesModelPath = std::string(ROUNDCHAT_SHARED_DIR) + "/models/stories260K.gguf";

// Its logits and greedy outputs from an independent float64 forward pass, parsed once.
inline const nlohmann::json& referenceJson() {
    static const nlohmann::json ref = [] {
        std::ifstream in(std::string(ROUNDCHAT_SHARED_DIR) + "/models/reference_public.json");
        return nlohmann::json::parse(in);
    }();
    return ref;
}

// Loads `path` on `kind` (contextLength 0: the trained context). A failed load, or a load that fell back to another
// backend, fails the test and gives null.
inline std::unique_ptr<Model> loadModel(const std::string& path, BackendKind kind, int contextLength = 0) {
    LoadOptions options;
    options.backend = kind;
    options.contextLength = contextLength;
    Result<std::unique_ptr<Model>> model = Model::load(path, options);
    EXPECT_TRUE(model.ok()) << (model.ok() ? "" : model.error().toString());
    if (!model.ok())
        return nullptr;
    EXPECT_EQ((*model)->backendInfo().kind, kind) << (*model)->backendInfo().fallbackReason;
    return std::move(*model);
}

}  // namespace inference::test
