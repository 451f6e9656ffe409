// Decode GEMV: a block of kWarps warps computes kWarps outputs, one warp per output (its row, or its gate and up
// rows for SwiGlu). The block first stages the input in shared memory, slab by slab of kSlab columns: as float32
// (optionally RMS-normalised: x * normWeight / rms(x)), or for the integer path as two int8 levels per block of 32
// with their scales (kernels/fused_ref.h). Lanes then walk the row in tasks (consecutive lanes read consecutive
// bytes, so loads coalesce), decode in registers, multiply with the staged input, and the warp reduces. Staging once
// per block keeps input traffic at 1 / kWarps of the weight rows', and the norm/epilogue fusions remove the separate
// elementwise launches.
#include "kernels/gemv.h"

#include "quant_decode.cuh"

namespace kernels {

namespace {

constexpr int kWarps = 16;  // outputs per block: 2048-row matrices give 128 blocks of 16 warps, one per SM
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kSlab = 8192;  // input columns staged at a time (32 KB as float32); a multiple of every task size
constexpr int kQuantGroup = 8;  // activation values one thread quantises (4 threads per int8 block of 32)
constexpr int kIntUnroll = 2;   // pairs of blocks in flight per lane on the integer path

struct Params {
    const uint8_t* w;
    int64_t rowBytes;
    int cols;
    int outputs;  // rows, or rows / 2 for SwiGlu
    const float* x;
    const float* norm;
    float eps;
    float* y;
};

template <GemvEpilogue E>
constexpr int kRowsPerWarp = E == GemvEpilogue::SwiGlu ? 2 : 1;

// 1 / rms(x) over cols values (every thread gets it), or 1 without a norm.
__device__ float normScale(const Params& p, float* scratch) {
    if (!p.norm)
        return 1.0f;
    float sum = 0.0f;
    for (int i = 4 * threadIdx.x; i < p.cols; i += 4 * kThreads) {
        const float4 v = __ldg(reinterpret_cast<const float4*>(p.x + i));
        sum += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    sum = blockReduceSum(sum, scratch);
    return rsqrtf(sum / static_cast<float>(p.cols) + p.eps);
}

// Rows of output o: o, and o + outputs (the up row) for SwiGlu.
__device__ inline const uint8_t* rowOf(const Params& p, int o, int r) {
    return p.w + static_cast<int64_t>(o + r * p.outputs) * p.rowBytes;
}

// Pulls the warp's weight rows toward L2 (one 128-byte line per lane and step) so they stream in while the block
// stages its input; prefetch has no other effect.
template <int kRows>
__device__ inline void prefetchRows(const Params& p, int o) {
    const int lane = threadIdx.x % kWarpSize;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        const uint8_t* row = rowOf(p, o, r);
        for (int b = 128 * lane; b < p.rowBytes; b += 128 * kWarpSize)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(row + b));
    }
}

// Input value i (x[i], or normalised), four at a time; i a multiple of 4.
__device__ inline float4 loadInput(const Params& p, int i, float scale) {
    float4 v = __ldg(reinterpret_cast<const float4*>(p.x + i));
    if (p.norm) {
        const float4 g = __ldg(reinterpret_cast<const float4*>(p.norm + i));
        v = make_float4(v.x * scale * g.x, v.y * scale * g.y, v.z * scale * g.z, v.w * scale * g.w);
    }
    return v;
}

// Stages input columns [c0, c0 + len) as float32: xs[i - c0].
__device__ void stageFloat(const Params& p, int c0, int len, float scale, float* xs) {
    for (int i = 4 * threadIdx.x; i < len; i += 4 * kThreads)
        *reinterpret_cast<float4*>(xs + i) = loadInput(p, c0 + i, scale);
}

// Stages input columns [c0, c0 + len) as two int8 levels (hi, lo) with per-block {d, d / 254, d sum(hi) + d / 254
// sum(lo), 0} (ds): the scheme of quantizeActivationRef, with the same IEEE operations so both sides agree. Four
// consecutive lanes share a block of 32; every thread runs the same number of rounds so the shuffles see full warps.
__device__ void stageInt8(const Params& p, int c0, int len, float scale, int8_t* hi, int8_t* lo, float4* ds) {
    const int groups = len / kQuantGroup;
    for (int base = 0; base < groups; base += kThreads) {
        const int g = base + static_cast<int>(threadIdx.x);
        const bool in = g < groups;
        float v[kQuantGroup] = {};
        if (in) {
            const float4 a = loadInput(p, c0 + g * kQuantGroup, scale);
            const float4 b = loadInput(p, c0 + g * kQuantGroup + 4, scale);
            v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
        }
        float amax = 0.0f;
#pragma unroll
        for (int i = 0; i < kQuantGroup; ++i)
            amax = fmaxf(amax, fabsf(v[i]));
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
        // IEEE operations throughout, as on the CPU (fast-math would approximate the divisions).
        const float d = __fdiv_rn(amax, 127.0f);
        const float dLow = __fdiv_rn(d, kActLowDivisor);
        const float inv = d > 0.0f ? __frcp_rn(d) : 0.0f;
        const float invLow = d > 0.0f ? __frcp_rn(dLow) : 0.0f;
        uint32_t packedHi[2] = {0, 0}, packedLo[2] = {0, 0};
        float sum = 0.0f;
#pragma unroll
        for (int i = 0; i < kQuantGroup; ++i) {
            int q = 0, r = 0;
            if (d > 0.0f) {
                const float h = rintf(__fmul_rn(v[i], inv));
                q = static_cast<int>(h);
                r = min(127, max(-127, __float2int_rn(__fmul_rn(__fmaf_rn(-d, h, v[i]), invLow))));
            }
            sum += d * static_cast<float>(q) + dLow * static_cast<float>(r);
            packedHi[i / 4] |= static_cast<uint32_t>(q & 0xff) << (8 * (i % 4));
            packedLo[i / 4] |= static_cast<uint32_t>(r & 0xff) << (8 * (i % 4));
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        if (in) {
            *reinterpret_cast<uint2*>(hi + g * kQuantGroup) = make_uint2(packedHi[0], packedHi[1]);
            *reinterpret_cast<uint2*>(lo + g * kQuantGroup) = make_uint2(packedLo[0], packedLo[1]);
            if (g % 4 == 0)
                ds[g / 4] = make_float4(d, dLow, sum, 0.0f);
        }
    }
}

template <GemvEpilogue E>
__device__ inline void finish(const Params& p, int o, const float (&acc)[kRowsPerWarp<E>]) {
    float d[kRowsPerWarp<E>];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp<E>; ++r)
        d[r] = warpReduceSum(acc[r]);
    if (threadIdx.x % kWarpSize != 0)
        return;
    if constexpr (E == GemvEpilogue::Store)
        p.y[o] = d[0];
    else if constexpr (E == GemvEpilogue::Accumulate)
        p.y[o] += d[0];
    else
        p.y[o] = d[0] / (1.0f + __expf(-d[0])) * d[kRowsPerWarp<E> - 1];
}

// Float path for every codec. grid = ceil(outputs / kWarps).
template <typename C, GemvEpilogue E>
__global__ void __launch_bounds__(kThreads) gemvKernel(Params p) {
    constexpr int kRows = kRowsPerWarp<E>;
    // Tasks in flight per lane: 8 small ones (a whole 2048-wide F16 row), fewer of the big quantised ones, whose
    // decoded values take the registers.
    constexpr int kUnroll = C::kTask >= 64 ? 1 : C::kTask >= 32 ? 2 : 8;
    __shared__ float4 stage4[kSlab / 4];
    __shared__ float scratch[kWarpSize];
    float* xs = reinterpret_cast<float*>(stage4);
    const int o = blockIdx.x * kWarps + threadIdx.x / kWarpSize;
    const int lane = threadIdx.x % kWarpSize;
    const bool active = o < p.outputs;  // idle warps still take part in staging and barriers
    if (active)
        prefetchRows<kRows>(p, o);
    const float scale = normScale(p, scratch);
    float acc[kRows] = {};
    for (int c0 = 0; c0 < p.cols; c0 += kSlab) {
        const int len = min(kSlab, p.cols - c0);
        __syncthreads();  // the previous slab is consumed
        stageFloat(p, c0, len, scale, xs);
        __syncthreads();
        if (!active)
            continue;
        // kUnroll tasks per lane per round, all loads issued before any is consumed: a task past the slab re-reads
        // the last one (no branch splits the round) and its product is dropped.
        const int tEnd = (c0 + len) / C::kTask;
        for (int t0 = c0 / C::kTask + lane; t0 < tEnd; t0 += kUnroll * kWarpSize) {
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) {
                const int t = min(t0 + u * kWarpSize, tEnd - 1);
                const float* xt = xs + t * C::kTask - c0;
#pragma unroll
                for (int r = 0; r < kRows; ++r) {
                    float v[C::kTask];
                    C::decode(rowOf(p, o, r), t, v);
                    float part = 0.0f;
#pragma unroll
                    for (int i = 0; i < C::kTask; i += 4) {
                        const float4 xv = *reinterpret_cast<const float4*>(xt + i);
                        part = fmaf(v[i], xv.x, part);
                        part = fmaf(v[i + 1], xv.y, part);
                        part = fmaf(v[i + 2], xv.z, part);
                        part = fmaf(v[i + 3], xv.w, part);
                    }
                    acc[r] += t0 + u * kWarpSize < tEnd ? part : 0.0f;
                }
            }
        }
    }
    if (active)
        finish<E>(p, o, acc);
}

// Integer path (Q8_0, Q4_0; cols a multiple of 64): one pair of blocks per lane per step. grid as gemvKernel.
template <GgmlType T, GemvEpilogue E>
__global__ void __launch_bounds__(kThreads) gemvInt8Kernel(Params p) {
    using C = IntCodec<T>;
    constexpr int kRows = kRowsPerWarp<E>;
    constexpr int kPair = 2 * kActBlock;
    __shared__ int4 stageHi[kSlab / 16];
    __shared__ int4 stageLo[kSlab / 16];
    __shared__ float4 stageD[kSlab / kActBlock];
    __shared__ float scratch[kWarpSize];
    int8_t* xHi = reinterpret_cast<int8_t*>(stageHi);
    int8_t* xLo = reinterpret_cast<int8_t*>(stageLo);
    const int o = blockIdx.x * kWarps + threadIdx.x / kWarpSize;
    const int lane = threadIdx.x % kWarpSize;
    const bool active = o < p.outputs;
    if (active)
        prefetchRows<kRows>(p, o);
    const float scale = normScale(p, scratch);
    float acc[kRows] = {};
    for (int c0 = 0; c0 < p.cols; c0 += kSlab) {
        const int len = min(kSlab, p.cols - c0);
        __syncthreads();
        stageInt8(p, c0, len, scale, xHi, xLo, stageD);
        __syncthreads();
        if (!active)
            continue;
        // Two pairs per lane per round, loaded before either is consumed (past the slab: re-read, dropped).
        const int qEnd = (c0 + len) / kPair;
        for (int q0 = c0 / kPair + lane; q0 < qEnd; q0 += kIntUnroll * kWarpSize) {
#pragma unroll
            for (int u = 0; u < kIntUnroll; ++u) {
                const int q = min(q0 + u * kWarpSize, qEnd - 1);
                const int local = q * kPair - c0;  // staged column of the pair
                int hi[16], lo[16];
                const int4* srcHi = reinterpret_cast<const int4*>(xHi + local);
                const int4* srcLo = reinterpret_cast<const int4*>(xLo + local);
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const int4 h = srcHi[i];
                    const int4 l = srcLo[i];
                    hi[4 * i] = h.x; hi[4 * i + 1] = h.y; hi[4 * i + 2] = h.z; hi[4 * i + 3] = h.w;
                    lo[4 * i] = l.x; lo[4 * i + 1] = l.y; lo[4 * i + 2] = l.z; lo[4 * i + 3] = l.w;
                }
                const float4 s0 = stageD[local / kActBlock];
                const float4 s1 = stageD[local / kActBlock + 1];
#pragma unroll
                for (int r = 0; r < kRows; ++r) {
                    const float part =
                        C::pairDot(rowOf(p, o, r) + static_cast<int64_t>(q) * C::kPairBytes, hi, lo, s0, s1);
                    acc[r] += q0 + u * kWarpSize < qEnd ? part : 0.0f;
                }
            }
        }
    }
    if (active)
        finish<E>(p, o, acc);
}

template <GemvEpilogue E>
void launch(cudaStream_t stream, GgmlType type, const Params& p) {
    const unsigned grid = ceilDiv(p.outputs, kWarps);
    if (usesInt8Activations(type, p.cols)) {
        if (type == GgmlType::Q8_0)
            gemvInt8Kernel<GgmlType::Q8_0, E><<<grid, kThreads, 0, stream>>>(p);
        else
            gemvInt8Kernel<GgmlType::Q4_0, E><<<grid, kThreads, 0, stream>>>(p);
        return;
    }
    dispatchType(type, [&](auto codec) { gemvKernel<decltype(codec), E><<<grid, kThreads, 0, stream>>>(p); });
}

}  // namespace

Status gemv(cudaStream_t stream, const GemvArgs& a) {
    RC_TRY(checkRowShape("gemv", a.type, a.cols));
    if (a.rows < 0 || (a.epilogue == GemvEpilogue::SwiGlu && a.rows % 2 != 0))
        return invalidArgument("gemv: row count " + std::to_string(a.rows) +
                               " must be non-negative (and even for SwiGlu)");
    if (a.rows == 0)
        return Status::success();
    const Params p{static_cast<const uint8_t*>(a.w), rowBytes(a.type, a.cols), a.cols,
                   a.epilogue == GemvEpilogue::SwiGlu ? a.rows / 2 : a.rows, a.x, a.normWeight, a.normEps, a.y};
    switch (a.epilogue) {
        case GemvEpilogue::Store: launch<GemvEpilogue::Store>(stream, a.type, p); break;
        case GemvEpilogue::Accumulate: launch<GemvEpilogue::Accumulate>(stream, a.type, p); break;
        case GemvEpilogue::SwiGlu: launch<GemvEpilogue::SwiGlu>(stream, a.type, p); break;
    }
    return checkLaunch("gemvKernel");
}

Status matvec(cudaStream_t stream, GgmlType type, const void* w, const float* x, float* y, int rows, int cols) {
    GemvArgs a;
    a.type = type;
    a.w = w;
    a.rows = rows;
    a.cols = cols;
    a.x = x;
    a.y = y;
    return gemv(stream, a);
}

}  // namespace kernels
