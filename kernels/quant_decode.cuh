// Device-side decoding of GGUF rows (private to kernels/). A row is cut into "tasks": runs of Codec<T>::kTask
// consecutive elements that one thread decodes with a few wide loads. GEMV, embedding lookup and dequantisation all
// iterate over tasks, so each block format is decoded in exactly one place (layouts: kernels/ggml_types.h).
// Block structs of Q8_0, Q4_0 and Q6_K have odd sizes (34, 18, 210 bytes) and are only 2-byte aligned inside a
// row, so their payload is read as 16-bit words; Q4_K blocks (144 bytes) keep 16-byte alignment and use 128-bit loads.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <string>

#include "cuda_common.cuh"
#include "kernels/ggml_types.h"

namespace kernels {

__device__ inline float halfBits(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// Reads N words (16- or 32-bit) from an address aligned to the word size, through the read-only cache.
template <typename Word, int N>
__device__ inline void loadWords(const uint8_t* p, Word (&w)[N]) {
    const Word* q = reinterpret_cast<const Word*>(p);
#pragma unroll
    for (int i = 0; i < N; ++i)
        w[i] = __ldg(q + i);
}

template <GgmlType T>
struct Codec;

// Four floats per task (one 128-bit load), so rows only need a multiple of 4 (stories260K's FFN is 172 wide).
template <>
struct Codec<GgmlType::F32> {
    static constexpr int kTask = 4;
    __device__ static void decode(const uint8_t* row, int task, float (&v)[kTask]) {
        const float4 a = __ldg(reinterpret_cast<const float4*>(row) + task);
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
    }
};

template <>
struct Codec<GgmlType::F16> {
    static constexpr int kTask = 8;
    __device__ static void decode(const uint8_t* row, int task, float (&v)[kTask]) {
        const uint4 raw = __ldg(reinterpret_cast<const uint4*>(row) + task);
        const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
            v[2 * i] = f.x;
            v[2 * i + 1] = f.y;
        }
    }
};

template <>
struct Codec<GgmlType::BF16> {
    static constexpr int kTask = 8;
    __device__ static void decode(const uint8_t* row, int task, float (&v)[kTask]) {
        const uint4 raw = __ldg(reinterpret_cast<const uint4*>(row) + task);
        const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            v[2 * i] = __uint_as_float(words[i] << 16);
            v[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
        }
    }
};

// One task = one block of 32.
template <>
struct Codec<GgmlType::Q8_0> {
    static constexpr int kTask = kQk8_0;
    __device__ static void decode(const uint8_t* row, int task, float (&v)[kTask]) {
        const uint8_t* b = row + static_cast<int64_t>(task) * sizeof(BlockQ8_0);
        uint16_t w[1 + kQk8_0 / 2];
        loadWords(b, w);
        const float d = halfBits(w[0]);
#pragma unroll
        for (int i = 0; i < kQk8_0 / 2; ++i) {
            v[2 * i] = d * static_cast<float>(static_cast<int8_t>(w[1 + i] & 0xff));
            v[2 * i + 1] = d * static_cast<float>(static_cast<int8_t>(w[1 + i] >> 8));
        }
    }
};

// One task = one block of 32: element i < 16 is the low nibble of qs[i], element i + 16 its high nibble.
template <>
struct Codec<GgmlType::Q4_0> {
    static constexpr int kTask = kQk4_0;
    __device__ static void decode(const uint8_t* row, int task, float (&v)[kTask]) {
        const uint8_t* b = row + static_cast<int64_t>(task) * sizeof(BlockQ4_0);
        uint16_t w[1 + kQk4_0 / 4];
        loadWords(b, w);
        const float d = halfBits(w[0]);
#pragma unroll
        for (int i = 0; i < kQk4_0 / 4; ++i) {
#pragma unroll
            for (int k = 0; k < 2; ++k) {
                const int q = (w[1 + i] >> (8 * k)) & 0xff;
                v[2 * i + k] = d * static_cast<float>((q & 0xf) - 8);
                v[2 * i + k + 16] = d * static_cast<float>((q >> 4) - 8);
            }
        }
    }
};

// One task = 64 elements (sub-blocks 2c and 2c+1 of a super-block), decoded from the 32 bytes qs[32c .. 32c+32).
template <>
struct Codec<GgmlType::Q4_K> {
    static constexpr int kTask = 64;
    static constexpr int kTasksPerBlock = kQkK / kTask;
    // 6-bit scale and min of sub-block j from the packed 12 bytes.
    __device__ static void scaleMin(const uint8_t* q, int j, int& sc, int& m) {
        if (j < 4) {
            sc = q[j] & 63;
            m = q[j + 4] & 63;
        } else {
            sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
            m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }
    __device__ static void decode(const uint8_t* row, int task, float (&v)[kTask]) {
        const BlockQ4_K* b = reinterpret_cast<const BlockQ4_K*>(row) + task / kTasksPerBlock;
        const int c = task % kTasksPerBlock;
        const uint4 head = __ldg(reinterpret_cast<const uint4*>(b));  // d, dmin, scales[12]
        const uint8_t* h = reinterpret_cast<const uint8_t*>(&head);
        const float d = halfBits(static_cast<uint16_t>(head.x & 0xffff));
        const float dmin = halfBits(static_cast<uint16_t>(head.x >> 16));
        int sc0, m0, sc1, m1;
        scaleMin(h + 4, 2 * c, sc0, m0);
        scaleMin(h + 4, 2 * c + 1, sc1, m1);
        const float d0 = d * sc0, o0 = dmin * m0, d1 = d * sc1, o1 = dmin * m1;
        const uint4* qs = reinterpret_cast<const uint4*>(b->qs + 32 * c);
        const uint4 qa = __ldg(qs);
        const uint4 qb = __ldg(qs + 1);
        const uint32_t words[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
#pragma unroll
        for (int i = 0; i < 32; ++i) {
            const int q = (words[i / 4] >> (8 * (i % 4))) & 0xff;
            v[i] = d0 * static_cast<float>(q & 0xf) - o0;
            v[i + 32] = d1 * static_cast<float>(q >> 4) - o1;
        }
    }
};

// One task = 32 elements y[128h + 32g + l], l < 32, of a super-block (half h, quarter g): 4 low bits from
// ql[64h + 32(g & 1) + l] (low nibble for g < 2, high for g >= 2), 2 high bits from qh[32h + l] >> 2g, scale
// scales[8h + 2g + l / 16].
template <>
struct Codec<GgmlType::Q6_K> {
    static constexpr int kTask = 32;
    static constexpr int kTasksPerBlock = kQkK / kTask;
    __device__ static void decode(const uint8_t* row, int task, float (&v)[kTask]) {
        const uint8_t* b = row + static_cast<int64_t>(task / kTasksPerBlock) * sizeof(BlockQ6_K);
        const int t = task % kTasksPerBlock;
        const int h = t / 4;
        const int g = t % 4;
        uint16_t ql[16];
        uint16_t qh[16];
        loadWords(b + offsetof(BlockQ6_K, ql) + 64 * h + 32 * (g & 1), ql);
        loadWords(b + offsetof(BlockQ6_K, qh) + 32 * h, qh);
        const uint16_t dBits = __ldg(reinterpret_cast<const uint16_t*>(b + offsetof(BlockQ6_K, d)));
        const uint16_t scBits =
            __ldg(reinterpret_cast<const uint16_t*>(b + offsetof(BlockQ6_K, scales) + 8 * h + 2 * g));
        const float d = halfBits(dBits);
        const float s0 = d * static_cast<float>(static_cast<int8_t>(scBits & 0xff));
        const float s1 = d * static_cast<float>(static_cast<int8_t>(scBits >> 8));
        const int lowShift = g >= 2 ? 4 : 0;
#pragma unroll
        for (int l = 0; l < 32; ++l) {
            const int lo = ((ql[l / 2] >> (8 * (l % 2))) >> lowShift) & 0xf;
            const int hi = ((qh[l / 2] >> (8 * (l % 2))) >> (2 * g)) & 3;
            v[l] = (l < 16 ? s0 : s1) * static_cast<float>((lo | (hi << 4)) - 32);
        }
    }
};

// ---- Integer path (Q8_0, Q4_0): dot products of weight blocks with an int8-quantised activation ----
// A lane takes a pair of blocks (64 elements: 68 bytes of Q8_0, 36 of Q4_0). Rows of whole pairs are 4-byte
// aligned, so a pair is read as 32-bit words; the first block's payload starts 2 bytes into a word and is realigned
// with funnel shifts. The activation of a pair comes in two int8 levels (kernels/fused_ref.h), 64 values each as 16
// words (hi, lo), with per-block float4 {d, d / 254, d sum(q) + d / 254 sum(r), 0}.

// Bytes 2..5 + 4k of a word array, as one word.
__device__ inline int shiftedWord(const uint32_t* w, int k) {
    return static_cast<int>(__funnelshift_r(w[k], w[k + 1], 16));
}

// dot of 4 packed int8 weights with both activation levels: sums {hi, lo} += ...
__device__ inline void dp4a2(int w, int hi, int lo, int2& s) {
    s.x = __dp4a(w, hi, s.x);
    s.y = __dp4a(w, lo, s.y);
}

template <GgmlType T>
struct IntCodec;

template <>
struct IntCodec<GgmlType::Q8_0> {
    static constexpr int kPairBytes = 2 * sizeof(BlockQ8_0);
    // Words: [d0 | qs0 0..1], qs0 2..29 (7 words), [qs0 30..31 | d1], qs1 (8 words).
    __device__ static float pairDot(const uint8_t* pair, const int (&hi)[16], const int (&lo)[16], float4 s0,
                                    float4 s1) {
        uint32_t w[kPairBytes / 4];
        loadWords(pair, w);
        int2 a = make_int2(0, 0), b = make_int2(0, 0);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            dp4a2(shiftedWord(w, k), hi[k], lo[k], a);
            dp4a2(static_cast<int>(w[9 + k]), hi[8 + k], lo[8 + k], b);
        }
        const float d0 = halfBits(static_cast<uint16_t>(w[0] & 0xffff));
        const float d1 = halfBits(static_cast<uint16_t>(w[8] >> 16));
        return d0 * (s0.x * static_cast<float>(a.x) + s0.y * static_cast<float>(a.y)) +
               d1 * (s1.x * static_cast<float>(b.x) + s1.y * static_cast<float>(b.y));
    }
};

template <>
struct IntCodec<GgmlType::Q4_0> {
    static constexpr int kPairBytes = 2 * sizeof(BlockQ4_0);
    // Words: [d0 | qs0 0..1], qs0 2..13 (3 words), [qs0 14..15 | d1], qs1 (4 words). Byte j of qs holds elements j
    // (low nibble) and j + 16 (high nibble); a nibble n stands for n - 8, so dot = d (sum n x - 8 sum x).
    __device__ static float pairDot(const uint8_t* pair, const int (&hi)[16], const int (&lo)[16], float4 s0,
                                    float4 s1) {
        uint32_t w[kPairBytes / 4];
        loadWords(pair, w);
        int2 a = make_int2(0, 0), b = make_int2(0, 0);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const int p = shiftedWord(w, k);
            const int q = static_cast<int>(w[5 + k]);
            dp4a2(p & 0x0f0f0f0f, hi[k], lo[k], a);
            dp4a2((p >> 4) & 0x0f0f0f0f, hi[4 + k], lo[4 + k], a);
            dp4a2(q & 0x0f0f0f0f, hi[8 + k], lo[8 + k], b);
            dp4a2((q >> 4) & 0x0f0f0f0f, hi[12 + k], lo[12 + k], b);
        }
        const float d0 = halfBits(static_cast<uint16_t>(w[0] & 0xffff));
        const float d1 = halfBits(static_cast<uint16_t>(w[4] >> 16));
        return d0 * (s0.x * static_cast<float>(a.x) + s0.y * static_cast<float>(a.y) - 8.0f * s0.z) +
               d1 * (s1.x * static_cast<float>(b.x) + s1.y * static_cast<float>(b.y) - 8.0f * s1.z);
    }
};

// Calls f(Codec<T>{}) for a runtime type; returns false for a type without a device codec.
template <typename F>
__host__ inline bool dispatchType(GgmlType type, F&& f) {
    switch (type) {
    case GgmlType::F32: f(Codec<GgmlType::F32>{}); return true;
    case GgmlType::F16: f(Codec<GgmlType::F16>{}); return true;
    case GgmlType::BF16: f(Codec<GgmlType::BF16>{}); return true;
    case GgmlType::Q8_0: f(Codec<GgmlType::Q8_0>{}); return true;
    case GgmlType::Q4_0: f(Codec<GgmlType::Q4_0>{}); return true;
    case GgmlType::Q4_K: f(Codec<GgmlType::Q4_K>{}); return true;
    case GgmlType::Q6_K: f(Codec<GgmlType::Q6_K>{}); return true;
    }
    return false;
}

// Checks that rows of `cols` elements of `type` split into whole tasks; `op` names the caller in the error, which
// lists the supported types for an unsupported one.
inline Status checkRowShape(const char* op, GgmlType type, int64_t cols) {
    int64_t task = 0;
    if (!dispatchType(type, [&](auto codec) { task = decltype(codec)::kTask; }))
        return Error{ErrorCode::Unsupported, std::string(op) + ": tensor type " + typeName(type) +
                                                 " has no GPU kernel (supported: " + kSupportedTypeNames + ")"};
    const int64_t unit = task > blockSize(type) ? task : blockSize(type);
    if (cols <= 0 || cols % unit != 0)
        return invalidArgument(std::string(op) + ": row length " + std::to_string(cols) + " of a " + typeName(type) +
                               " tensor is not a multiple of " + std::to_string(unit));
    return Status::success();
}

}  // namespace kernels
