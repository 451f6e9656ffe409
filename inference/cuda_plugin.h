// The CUDA backend as a runtime-loaded plugin. The core `inference` library links no CUDA library: the CUDA backend
// (inference/cuda/ + kernels_cuda, with the CUDA runtime linked statically and cuBLAS next to it) is the shared
// library libroundchat-cuda.so, installed in a private folder (<prefix>/lib/roundchat/) by the roundchat-cuda
// package. loadCudaBackend() dlopens it, so the app starts and runs on the CPU where the plugin, cuBLAS, the NVIDIA
// driver or a GPU is missing, and the error says which and what to install. packaging/README.md says why.
// The plugin is built from the same sources as the app and exchanges C++ types (ModelConfig, ModelWeights, Backend)
// with it, so both must come from one build: the app passes kCudaPluginAbi and the plugin refuses any other.
// Threading: as Backend (the inference worker thread).
#pragma once

#include <memory>

#include "backend.h"

namespace inference {

// The version of the RoundChat build on both sides of the plugin boundary.
inline constexpr const char* kCudaPluginAbi = "roundchat-cuda-plugin " ROUNDCHAT_VERSION;
// The plugin's one exported symbol, of type CudaPluginFactory.
inline constexpr const char* kCudaPluginSymbol = "roundchat_create_cuda_backend";

// `abi`: kCudaPluginAbi of the caller. Writes the backend or the error into `out` (a C++ result through an
// extern "C" entry point: the C name keeps dlsym simple, the types are shared because the build is).
using CudaPluginFactory = void (*)(const char* abi, const ModelConfig& config, const ModelWeights& weights,
                                   const BackendOptions& options, Result<std::unique_ptr<Backend>>& out);

// Loads the plugin and creates the CUDA backend. The plugin stays loaded until the process exits: Backends run its
// code until they are destroyed, and its CUDA runtime cannot be torn down safely. Errors: NoGpu with a sentence that
// names what is missing (plugin, cuBLAS) and what to install; Mismatch for a plugin of another build; the backend's
// own errors (no driver, no device, out of GPU memory) as they come.
Result<std::unique_ptr<Backend>> loadCudaBackend(const ModelConfig& config, const ModelWeights& weights,
                                                 const BackendOptions& options);

}  // namespace inference
