// Helpers shared by the GPU kernel tests: random inputs, synchronous host <-> device copies on the default stream,
// quantised random weights, and a tolerance check that reports the worst element.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cuda_raii.h"
#include "kernels/ggml_types.h"
#include "kernels/quant_ref.h"

namespace gputest {

inline std::vector<float> randomFloats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float& x : v)
        x = dist(rng);
    return v;
}

template <typename T>
kernels::DeviceBuffer<T> toDevice(const std::vector<T>& host) {
    auto buf = kernels::DeviceBuffer<T>::create(host.size());
    EXPECT_TRUE(buf.ok()) << buf.error().toString();
    EXPECT_TRUE(buf->upload(host.data(), host.size(), nullptr).ok());
    EXPECT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
    return std::move(*buf);
}

template <typename T>
kernels::DeviceBuffer<T> deviceZeros(size_t n) {
    auto buf = kernels::DeviceBuffer<T>::create(n);
    EXPECT_TRUE(buf.ok()) << buf.error().toString();
    EXPECT_EQ(cudaMemset(buf->data(), 0, buf->bytes()), cudaSuccess);
    return std::move(*buf);
}

// Waits for the default stream (so kernel errors surface here) and copies the whole buffer back.
template <typename T>
std::vector<T> toHost(const kernels::DeviceBuffer<T>& buf) {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<T> host(buf.size());
    EXPECT_TRUE(buf.download(host.data(), host.size(), nullptr).ok());
    EXPECT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
    return host;
}

// (rows, cols) random weights encoded in `type` (for the float types: exact conversions of the random values).
inline std::vector<uint8_t> randomMatrix(kernels::GgmlType type, int rows, int cols, uint32_t seed) {
    const std::vector<float> values = randomFloats(static_cast<size_t>(rows) * cols, seed);
    const int64_t rb = kernels::rowBytes(type, cols);
    std::vector<uint8_t> bytes(static_cast<size_t>(rows * rb));
    for (int r = 0; r < rows; ++r)
        kernels::quantizeRowRef(type, values.data() + static_cast<size_t>(r) * cols, bytes.data() + r * rb, cols);
    return bytes;
}

inline std::vector<uint16_t> toHalf(const std::vector<float>& v) {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i)
        h[i] = kernels::floatToFp16(v[i]);
    return h;
}

inline std::vector<float> fromHalf(const std::vector<uint16_t>& h) {
    std::vector<float> v(h.size());
    for (size_t i = 0; i < h.size(); ++i)
        v[i] = kernels::fp16ToFloat(h[i]);
    return v;
}

// Expects |got[i] - want[i]| <= atol + rtol * |want[i]| everywhere; reports the first failure and the count.
inline void expectClose(const std::vector<float>& got, const std::vector<float>& want, float atol, float rtol,
                        const char* what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const bool ok = std::isinf(want[i]) ? got[i] == want[i]
                                            : std::fabs(got[i] - want[i]) <= atol + rtol * std::fabs(want[i]);
        if (!ok && bad++ == 0)
            ADD_FAILURE() << what << ": element " << i << " got " << got[i] << " want " << want[i];
    }
    EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " elements out of tolerance";
}

}  // namespace gputest
