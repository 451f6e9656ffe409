// Finds and dlopens the CUDA backend plugin (see cuda_plugin.h). The plugin lives in ROUNDCHAT_CUDA_PLUGIN_DIR,
// a path relative to the folder of the executable: <prefix>/bin/../lib/roundchat/ when installed. The build tree
// mirrors it (<build>/lib/roundchat/), so executables in <build>/app/ find it the same way; tests one folder deeper
// (<build>/tests/<lib>/) find it from their parent folder.
#include "cuda_plugin.h"

#include <dlfcn.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace inference {

#ifdef ROUNDCHAT_CUDA_PLUGIN_DIR

namespace {

namespace fs = std::filesystem;

constexpr const char* kPluginFile = "libroundchat-cuda.so";
constexpr const char* kInstallHint = "install the roundchat-cuda package (of the same version as roundchat)";

// The first candidate that exists; the installed location (the first one) when none does, for the message.
fs::path findPlugin() {
    std::error_code ec;
    const fs::path exeDir = fs::read_symlink("/proc/self/exe", ec).parent_path();
    const fs::path relative = fs::path(ROUNDCHAT_CUDA_PLUGIN_DIR) / kPluginFile;
    const fs::path installed = (exeDir / relative).lexically_normal();
    for (const fs::path& candidate : {installed, (exeDir.parent_path() / relative).lexically_normal()})
        if (fs::exists(candidate, ec))
            return candidate;
    return installed;
}

std::string dlErrorText() {
    const char* text = dlerror();
    return text ? text : "unknown dlopen error";
}

}  // namespace

Result<std::unique_ptr<Backend>> loadCudaBackend(const ModelConfig& config, const ModelWeights& weights,
                                                 const BackendOptions& options) {
    const fs::path path = findPlugin();
    std::error_code ec;
    if (!fs::exists(path, ec))
        return makeError(ErrorCode::NoGpu, "the CUDA plugin is not installed (" + path.string() +
                                               " is missing); to use an NVIDIA GPU, " + kInstallHint);
    // RTLD_NOW: a missing cuBLAS fails here, not at the first GEMM. RTLD_NODELETE: Backends run the plugin's code
    // until they are destroyed, and the statically linked CUDA runtime must not be unloaded before process exit.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!handle)
        return makeError(ErrorCode::NoGpu, "the CUDA plugin cannot be loaded (" + dlErrorText() +
                                               "); reinstall the roundchat-cuda package, which brings cuBLAS");
    auto factory = reinterpret_cast<CudaPluginFactory>(dlsym(handle, kCudaPluginSymbol));
    if (!factory)
        return makeError(ErrorCode::NoGpu, path.string() + " is not a RoundChat CUDA plugin (" + dlErrorText() +
                                               "); " + kInstallHint);
    Result<std::unique_ptr<Backend>> backend = makeError(ErrorCode::NoGpu, "the CUDA plugin returned nothing");
    factory(kCudaPluginAbi, config, weights, options, backend);
    return backend;
}

#else

Result<std::unique_ptr<Backend>> loadCudaBackend(const ModelConfig&, const ModelWeights&, const BackendOptions&) {
    return makeError(ErrorCode::NoGpu, "this RoundChat was built without CUDA (ROUNDCHAT_CUDA=OFF)");
}

#endif

}  // namespace inference
