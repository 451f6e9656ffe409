// RAII owners of CUDA resources and the startup device probe.
#include "kernels/cuda_raii.h"

#include <cstdio>

namespace kernels {

namespace {

std::string mib(size_t bytes) { return std::to_string((bytes + (1u << 20) - 1) >> 20) + " MiB"; }

std::string versionString(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

// Destructors cannot return errors: they log and go on.
void logFailure(cudaError_t err, const char* what) {
    if (err != cudaSuccess)
        std::fprintf(stderr, "roundchat: %s failed: %s\n", what, cudaGetErrorString(err));
}

}  // namespace

Status cudaStatus(cudaError_t err, const char* what) {
    if (err == cudaSuccess)
        return Status::success();
    const ErrorCode code = err == cudaErrorMemoryAllocation ? ErrorCode::OutOfGpuMemory : ErrorCode::GpuError;
    return Error{code, std::string(what) + ": " + cudaGetErrorString(err)};
}

Status cublasStatus(cublasStatus_t err, const char* what) {
    if (err == CUBLAS_STATUS_SUCCESS)
        return Status::success();
    const ErrorCode code = err == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::OutOfGpuMemory : ErrorCode::GpuError;
    return Error{code, std::string(what) + ": " + cublasGetStatusString(err)};
}

Result<DeviceInfo> probeCudaDevice(int device) {
    DeviceInfo info;
    info.device = device;
    cudaDriverGetVersion(&info.driverVersion);  // 0 when no driver is installed
    cudaRuntimeGetVersion(&info.runtimeVersion);
    if (info.driverVersion == 0)
        return Error{ErrorCode::NoGpu, "no NVIDIA driver found; install the NVIDIA driver to use the GPU"};
    if (info.driverVersion < kMinDriverVersion)
        return Error{ErrorCode::NoGpu, "NVIDIA driver supports CUDA " + versionString(info.driverVersion) +
                                           ", at least " + versionString(kMinDriverVersion) +
                                           " is needed; update the NVIDIA driver"};
    int count = 0;
    if (cudaError_t err = cudaGetDeviceCount(&count); err != cudaSuccess || count == 0)
        return Error{ErrorCode::NoGpu, std::string("no CUDA device found (") +
                                           (err != cudaSuccess ? cudaGetErrorString(err) : "device count is 0") +
                                           "); check that the NVIDIA driver is loaded"};
    if (device < 0 || device >= count)
        return Error{ErrorCode::NoGpu, "CUDA device " + std::to_string(device) + " requested, " +
                                           std::to_string(count) + " present"};
    cudaDeviceProp prop{};
    if (cudaError_t err = cudaGetDeviceProperties(&prop, device); err != cudaSuccess)
        return Error{ErrorCode::NoGpu, std::string("cannot query the CUDA device: ") + cudaGetErrorString(err)};
    info.name = prop.name;
    info.computeMajor = prop.major;
    info.computeMinor = prop.minor;
    info.multiProcessors = prop.multiProcessorCount;
    if (prop.major < kMinComputeMajor || (prop.major == kMinComputeMajor && prop.minor < kMinComputeMinor))
        return Error{ErrorCode::NoGpu, info.name + " has compute capability " + std::to_string(prop.major) + "." +
                                           std::to_string(prop.minor) +
                                           "; the GPU backend needs 7.5 (RTX 20 series) or newer"};
    int previous = 0;
    cudaGetDevice(&previous);
    if (cudaError_t err = cudaSetDevice(device); err != cudaSuccess)
        return Error{ErrorCode::NoGpu, std::string("cannot use the CUDA device: ") + cudaGetErrorString(err)};
    const cudaError_t memErr = cudaMemGetInfo(&info.freeBytes, &info.totalBytes);
    cudaSetDevice(previous);
    if (memErr != cudaSuccess)
        return Error{ErrorCode::NoGpu, std::string("cannot query GPU memory: ") + cudaGetErrorString(memErr)};
    return info;
}

Result<void*> deviceAlloc(size_t bytes) {
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaSuccess)
        return p;
    cudaGetLastError();  // clear the sticky-free allocation error so later launches do not report it
    size_t freeBytes = 0;
    size_t totalBytes = 0;
    cudaMemGetInfo(&freeBytes, &totalBytes);
    const ErrorCode code = err == cudaErrorMemoryAllocation ? ErrorCode::OutOfGpuMemory : ErrorCode::GpuError;
    return Error{code, "cudaMalloc of " + mib(bytes) + " failed (" + mib(freeBytes) + " free of " + mib(totalBytes) +
                           "): " + cudaGetErrorString(err)};
}

void deviceFree(void* p) noexcept {
    if (p)
        logFailure(cudaFree(p), "cudaFree");
}

Result<void*> pinnedAlloc(size_t bytes) {
    void* p = nullptr;
    const cudaError_t err = cudaMallocHost(&p, bytes);
    if (err == cudaSuccess)
        return p;
    cudaGetLastError();
    return Error{ErrorCode::OutOfMemory, "cudaMallocHost of " + mib(bytes) + " failed: " + cudaGetErrorString(err)};
}

void pinnedFree(void* p) noexcept {
    if (p)
        logFailure(cudaFreeHost(p), "cudaFreeHost");
}

// ---- Stream ----

Result<Stream> Stream::create() {
    cudaStream_t s = nullptr;
    RC_TRY(cudaStatus(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"));
    return Stream(s);
}

Stream& Stream::operator=(Stream&& o) noexcept {
    if (this != &o) {
        if (m_stream)
            logFailure(cudaStreamDestroy(m_stream), "cudaStreamDestroy");
        m_stream = std::exchange(o.m_stream, nullptr);
    }
    return *this;
}

Stream::~Stream() {
    if (m_stream)
        logFailure(cudaStreamDestroy(m_stream), "cudaStreamDestroy");
}

Status Stream::synchronize() const { return cudaStatus(cudaStreamSynchronize(m_stream), "cudaStreamSynchronize"); }

// ---- Event ----

Result<Event> Event::create(bool timing) {
    cudaEvent_t e = nullptr;
    RC_TRY(cudaStatus(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming),
                      "cudaEventCreate"));
    return Event(e);
}

Event& Event::operator=(Event&& o) noexcept {
    if (this != &o) {
        if (m_event)
            logFailure(cudaEventDestroy(m_event), "cudaEventDestroy");
        m_event = std::exchange(o.m_event, nullptr);
    }
    return *this;
}

Event::~Event() {
    if (m_event)
        logFailure(cudaEventDestroy(m_event), "cudaEventDestroy");
}

Status Event::record(cudaStream_t stream) { return cudaStatus(cudaEventRecord(m_event, stream), "cudaEventRecord"); }

Status Event::synchronize() const { return cudaStatus(cudaEventSynchronize(m_event), "cudaEventSynchronize"); }

Result<float> Event::elapsedMs(const Event& start, const Event& end) {
    float ms = 0.0f;
    RC_TRY(cudaStatus(cudaEventElapsedTime(&ms, start.m_event, end.m_event), "cudaEventElapsedTime"));
    return ms;
}

// ---- CublasHandle ----

Result<CublasHandle> CublasHandle::create() {
    cublasHandle_t h = nullptr;
    RC_TRY(cublasStatus(cublasCreate(&h), "cublasCreate"));
    return CublasHandle(h);
}

CublasHandle& CublasHandle::operator=(CublasHandle&& o) noexcept {
    if (this != &o) {
        if (m_handle)
            cublasDestroy(m_handle);
        m_handle = std::exchange(o.m_handle, nullptr);
    }
    return *this;
}

CublasHandle::~CublasHandle() {
    if (m_handle && cublasDestroy(m_handle) != CUBLAS_STATUS_SUCCESS)
        std::fprintf(stderr, "roundchat: cublasDestroy failed\n");
}

// ---- GraphExec ----

GraphExec& GraphExec::operator=(GraphExec&& o) noexcept {
    if (this != &o) {
        if (m_exec)
            logFailure(cudaGraphExecDestroy(m_exec), "cudaGraphExecDestroy");
        m_exec = std::exchange(o.m_exec, nullptr);
    }
    return *this;
}

GraphExec::~GraphExec() {
    if (m_exec)
        logFailure(cudaGraphExecDestroy(m_exec), "cudaGraphExecDestroy");
}

Status GraphExec::endCapture(cudaStream_t stream) {
    cudaGraph_t graph = nullptr;
    RC_TRY(cudaStatus(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture"));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
    logFailure(cudaGraphDestroy(graph), "cudaGraphDestroy");
    RC_TRY(cudaStatus(err, "cudaGraphInstantiate"));
    *this = GraphExec();
    m_exec = exec;
    return Status::success();
}

Status GraphExec::launch(cudaStream_t stream) const {
    return cudaStatus(cudaGraphLaunch(m_exec, stream), "cudaGraphLaunch");
}

}  // namespace kernels
