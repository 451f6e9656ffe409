// Fixture files from shared/ that several engine tests read.
#pragma once

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

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

}  // namespace inference::test
