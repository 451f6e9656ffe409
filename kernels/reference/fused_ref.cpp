// CPU references of the fused decode kernels, composed from the unfused references (see kernels/fused_ref.h).
#include "kernels/fused_ref.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/reference.h"

namespace kernels {

void quantizeActivationRef(const float* x, int64_t n, int8_t* q, int8_t* r, float* d) {
    for (int64_t b = 0; b < n / kActBlock; ++b) {
        const float* xb = x + b * kActBlock;
        float amax = 0.0f;
        for (int i = 0; i < kActBlock; ++i)
            amax = std::fmax(amax, std::fabs(xb[i]));
        d[b] = amax / 127.0f;
        const float dLow = d[b] / kActLowDivisor;
        const float inv = d[b] > 0.0f ? 1.0f / d[b] : 0.0f;
        const float invLow = d[b] > 0.0f ? 1.0f / dLow : 0.0f;
        for (int i = 0; i < kActBlock; ++i) {
            const int64_t j = b * kActBlock + i;
            const float hi = std::nearbyint(xb[i] * inv);
            q[j] = static_cast<int8_t>(hi);
            const float lo = std::nearbyint(std::fma(-d[b], hi, xb[i]) * invLow);
            r[j] = static_cast<int8_t>(std::clamp(lo, -127.0f, 127.0f));
        }
    }
}

void gemvRef(GgmlType type, const void* w, int rows, int cols, const float* x, const float* normWeight, float eps,
             GemvEpilogue epilogue, float* y) {
    const size_t n = static_cast<size_t>(cols);
    std::vector<float> in(x, x + n);
    if (normWeight)
        rmsnormRef(in.data(), x, normWeight, 1, cols, eps);
    if (usesInt8Activations(type, cols)) {
        std::vector<int8_t> q(n), r(n);
        std::vector<float> d(n / kActBlock);
        quantizeActivationRef(in.data(), cols, q.data(), r.data(), d.data());
        for (size_t i = 0; i < n; ++i) {
            const float db = d[i / kActBlock];
            in[i] = db * static_cast<float>(q[i]) + db / kActLowDivisor * static_cast<float>(r[i]);
        }
    }
    std::vector<float> dots(static_cast<size_t>(rows));
    matvecRef(type, w, in.data(), dots.data(), rows, cols);
    switch (epilogue) {
        case GemvEpilogue::Store:
            for (int r = 0; r < rows; ++r)
                y[r] = dots[static_cast<size_t>(r)];
            break;
        case GemvEpilogue::Accumulate:
            for (int r = 0; r < rows; ++r)
                y[r] += dots[static_cast<size_t>(r)];
            break;
        case GemvEpilogue::SwiGlu:
            swigluRef(y, dots.data(), dots.data() + rows / 2, rows / 2);
            break;
    }
}

namespace {

// A cache element from a float: fp16 bits (rounded to nearest even) or the float itself.
template <typename KV>
KV toKv(float x) {
    if constexpr (std::is_same_v<KV, uint16_t>)
        return floatToFp16(x);
    else
        return x;
}

}  // namespace

template <typename KV>
void ropeKvStoreRef(const float* qkv, float* q, KV* kCache, KV* vCache, const int32_t* positions, const int32_t* slots,
                    int nTokens, int nHeads, int nKvHeads, int headDim, int ropeDim, float freqBase) {
    const int64_t qDim = static_cast<int64_t>(nHeads) * headDim;
    const int64_t kvDim = static_cast<int64_t>(nKvHeads) * headDim;
    std::vector<float> k(static_cast<size_t>(kvDim));
    for (int t = 0; t < nTokens; ++t) {
        const float* row = qkv + t * (qDim + 2 * kvDim);
        float* qt = q + t * qDim;
        std::copy(row, row + qDim, qt);
        std::copy(row + qDim, row + qDim + kvDim, k.begin());
        ropeRef(qt, positions + t, 1, nHeads, headDim, ropeDim, freqBase);
        ropeRef(k.data(), positions + t, 1, nKvHeads, headDim, ropeDim, freqBase);
        for (int64_t i = 0; i < kvDim; ++i) {
            kCache[slots[t] * kvDim + i] = toKv<KV>(k[static_cast<size_t>(i)]);
            vCache[slots[t] * kvDim + i] = toKv<KV>(row[qDim + kvDim + i]);
        }
    }
}

template void ropeKvStoreRef<uint16_t>(const float*, float*, uint16_t*, uint16_t*, const int32_t*, const int32_t*, int,
                                       int, int, int, int, float);
template void ropeKvStoreRef<float>(const float*, float*, float*, float*, const int32_t*, const int32_t*, int, int, int,
                                    int, int, float);

}  // namespace kernels
