// RAII owners of CUDA resources (device and pinned memory, streams, events, cuBLAS handles, executable graphs) and
// the device probe the app runs at startup. All wrappers are move-only; destructors never throw and log a failed
// release to stderr. Allocation failures are values: ErrorCode::OutOfGpuMemory with the bytes asked for and free.
// Thread safety: a wrapper belongs to the one inference thread that owns all CUDA state; none is shared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "roundchat/result.h"

namespace kernels {

using roundchat::Error;
using roundchat::ErrorCode;
using roundchat::Result;
using roundchat::Status;

// The oldest driver we accept (CUDA 13.0, which the runtime linked into the plugin needs; reported by
// cudaDriverGetVersion as 1000 * major + 10 * minor) and the oldest GPU (Turing, compute capability 7.5): the fat
// binary carries no SASS or PTX below that.
constexpr int kMinDriverVersion = 13000;
constexpr int kMinComputeMajor = 7;
constexpr int kMinComputeMinor = 5;

struct DeviceInfo {
    int device = 0;
    std::string name;
    int computeMajor = 0;
    int computeMinor = 0;
    int multiProcessors = 0;
    int driverVersion = 0;   // 1000 * major + 10 * minor
    int runtimeVersion = 0;  // the CUDA runtime we were built against, same encoding
    size_t totalBytes = 0;
    size_t freeBytes = 0;
};

// Checks that `device` exists, the driver is new enough and the GPU is Turing or newer. Failures are
// ErrorCode::NoGpu with a detail that says what to do (install/update the driver, which GPU was found).
Result<DeviceInfo> probeCudaDevice(int device = 0);

// Maps a CUDA error to a Status: cudaErrorMemoryAllocation -> OutOfGpuMemory, anything else -> GpuError; `what`
// names the failed call for the log.
Status cudaStatus(cudaError_t err, const char* what);
Status cublasStatus(cublasStatus_t err, const char* what);

// Untyped device allocation behind DeviceBuffer<T>; a failure reports requested and free bytes.
Result<void*> deviceAlloc(size_t bytes);
void deviceFree(void* p) noexcept;
Result<void*> pinnedAlloc(size_t bytes);
void pinnedFree(void* p) noexcept;

// Owns `count` elements of T in device memory (uninitialised).
template <typename T>
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    static Result<DeviceBuffer> create(size_t count) {
        if (count == 0)
            return DeviceBuffer();
        Result<void*> p = deviceAlloc(count * sizeof(T));
        if (!p)
            return p.error();
        return DeviceBuffer(static_cast<T*>(*p), count);
    }
    DeviceBuffer(DeviceBuffer&& o) noexcept
        : m_data(std::exchange(o.m_data, nullptr)), m_count(std::exchange(o.m_count, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) {
            deviceFree(m_data);
            m_data = std::exchange(o.m_data, nullptr);
            m_count = std::exchange(o.m_count, 0);
        }
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    ~DeviceBuffer() { deviceFree(m_data); }

    T* data() { return m_data; }
    const T* data() const { return m_data; }
    size_t size() const { return m_count; }
    size_t bytes() const { return m_count * sizeof(T); }

    // Copies `count` elements (at most size()) from host to the start of this buffer, ordered on `stream`.
    // Pageable `src` makes the copy synchronous with respect to the host.
    Status upload(const T* src, size_t count, cudaStream_t stream) {
        if (count > m_count)
            return Error{ErrorCode::InvalidArgument, "upload larger than the device buffer"};
        return cudaStatus(cudaMemcpyAsync(m_data, src, count * sizeof(T), cudaMemcpyHostToDevice, stream),
                          "cudaMemcpyAsync(H2D)");
    }
    Status download(T* dst, size_t count, cudaStream_t stream) const {
        if (count > m_count)
            return Error{ErrorCode::InvalidArgument, "download larger than the device buffer"};
        return cudaStatus(cudaMemcpyAsync(dst, m_data, count * sizeof(T), cudaMemcpyDeviceToHost, stream),
                          "cudaMemcpyAsync(D2H)");
    }

private:
    DeviceBuffer(T* p, size_t count) : m_data(p), m_count(count) {}
    T* m_data = nullptr;
    size_t m_count = 0;
};

// Owns `count` elements of page-locked host memory (fast, truly asynchronous transfers).
template <typename T>
class PinnedBuffer {
public:
    PinnedBuffer() = default;
    static Result<PinnedBuffer> create(size_t count) {
        if (count == 0)
            return PinnedBuffer();
        Result<void*> p = pinnedAlloc(count * sizeof(T));
        if (!p)
            return p.error();
        return PinnedBuffer(static_cast<T*>(*p), count);
    }
    PinnedBuffer(PinnedBuffer&& o) noexcept
        : m_data(std::exchange(o.m_data, nullptr)), m_count(std::exchange(o.m_count, 0)) {}
    PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
        if (this != &o) {
            pinnedFree(m_data);
            m_data = std::exchange(o.m_data, nullptr);
            m_count = std::exchange(o.m_count, 0);
        }
        return *this;
    }
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
    ~PinnedBuffer() { pinnedFree(m_data); }

    T* data() { return m_data; }
    const T* data() const { return m_data; }
    T& operator[](size_t i) { return m_data[i]; }
    const T& operator[](size_t i) const { return m_data[i]; }
    size_t size() const { return m_count; }

private:
    PinnedBuffer(T* p, size_t count) : m_data(p), m_count(count) {}
    T* m_data = nullptr;
    size_t m_count = 0;
};

// A non-blocking stream (does not synchronise with the legacy default stream).
class Stream {
public:
    Stream() = default;
    static Result<Stream> create();
    Stream(Stream&& o) noexcept : m_stream(std::exchange(o.m_stream, nullptr)) {}
    Stream& operator=(Stream&& o) noexcept;
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    ~Stream();

    cudaStream_t get() const { return m_stream; }
    Status synchronize() const;

private:
    explicit Stream(cudaStream_t s) : m_stream(s) {}
    cudaStream_t m_stream = nullptr;
};

class Event {
public:
    Event() = default;
    // timing = false gives a lighter event for pure ordering.
    static Result<Event> create(bool timing);
    Event(Event&& o) noexcept : m_event(std::exchange(o.m_event, nullptr)) {}
    Event& operator=(Event&& o) noexcept;
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    ~Event();

    cudaEvent_t get() const { return m_event; }
    Status record(cudaStream_t stream);
    Status synchronize() const;
    // Milliseconds between two recorded timing events.
    static Result<float> elapsedMs(const Event& start, const Event& end);

private:
    explicit Event(cudaEvent_t e) : m_event(e) {}
    cudaEvent_t m_event = nullptr;
};

class CublasHandle {
public:
    CublasHandle() = default;
    static Result<CublasHandle> create();
    CublasHandle(CublasHandle&& o) noexcept : m_handle(std::exchange(o.m_handle, nullptr)) {}
    CublasHandle& operator=(CublasHandle&& o) noexcept;
    CublasHandle(const CublasHandle&) = delete;
    CublasHandle& operator=(const CublasHandle&) = delete;
    ~CublasHandle();

    cublasHandle_t get() const { return m_handle; }

private:
    explicit CublasHandle(cublasHandle_t h) : m_handle(h) {}
    cublasHandle_t m_handle = nullptr;
};

// An instantiated CUDA graph (e.g. one decode step) captured from a stream.
class GraphExec {
public:
    GraphExec() = default;
    GraphExec(GraphExec&& o) noexcept : m_exec(std::exchange(o.m_exec, nullptr)) {}
    GraphExec& operator=(GraphExec&& o) noexcept;
    GraphExec(const GraphExec&) = delete;
    GraphExec& operator=(const GraphExec&) = delete;
    ~GraphExec();

    // Ends a capture begun with cudaStreamBeginCapture on `stream` and instantiates it, replacing any graph held.
    Status endCapture(cudaStream_t stream);
    bool valid() const { return m_exec != nullptr; }
    Status launch(cudaStream_t stream) const;

private:
    cudaGraphExec_t m_exec = nullptr;
};

}  // namespace kernels
