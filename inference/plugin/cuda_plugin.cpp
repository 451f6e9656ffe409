// The one exported symbol of libroundchat-cuda.so (see inference/cuda_plugin.h): checks that the app comes from the
// same build, then creates the CUDA backend of inference/cuda/.
#include "cuda_plugin.h"

#include <cstring>
#include <string>
#include <type_traits>

extern "C" __attribute__((visibility("default"))) void roundchat_create_cuda_backend(
    const char* abi, const inference::ModelConfig& config, const inference::ModelWeights& weights,
    const inference::BackendOptions& options, inference::Result<std::unique_ptr<inference::Backend>>& out) {
    using namespace inference;
    if (std::strcmp(abi, kCudaPluginAbi) != 0) {
        out = makeError(ErrorCode::Mismatch, std::string("the CUDA plugin is ") + kCudaPluginAbi + ", the app " +
                                                 abi + "; install roundchat-cuda of the same version as roundchat");
        return;
    }
    out = createCudaBackend(config, weights, options);
}

static_assert(std::is_same_v<decltype(&roundchat_create_cuda_backend), inference::CudaPluginFactory>,
              "the exported factory must match the type the loader casts it to");
