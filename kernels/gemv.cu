// Decode GEMV: a block of W warps computes W * O outputs, each warp O consecutive outputs (their rows, and for SwiGlu
// their up rows too); with split-K, grid.y blocks share an output, each over one chunk of the columns. The block first
// stages its input columns in shared memory, slab by slab of kSlab columns: as float32 (optionally RMS-normalised:
// x * normWeight / rms(x)), or for the integer path as two int8 levels per block of 32 with their scales
// (kernels/fused_ref.h). Lanes then walk the rows in tasks (consecutive lanes read consecutive bytes, so loads
// coalesce), decode in registers, multiply with the input, and the warp reduces. Staging once per block keeps input
// traffic at 1 / (W O) of the weight rows', and the norm/epilogue fusions remove the separate elementwise launches.
// The launch shape (W, O, split-K, programmatic dependent launch) is the GemvVariant; gemvAutoVariant picks one per
// shape from the table below.
#include "kernels/gemv.h"

#include "quant_decode.cuh"

namespace kernels {

namespace {

constexpr int kSlab = 8192;     // input columns staged at a time (32 KB as float32); a multiple of every task size
constexpr int kQuantGroup = 8;  // activation values one thread quantises (4 threads per int8 block of 32)
constexpr int kIntUnroll = 2;   // pairs of blocks in flight per lane on the integer path
// Split-K chunks are multiples of this many columns: of every task (64 at most), of an int8 pair of blocks (64) and
// of a K-quant super-block (256), so a chunk starts on a task, a pair and a block.
constexpr int kSplitUnit = 256;
constexpr int kSplitCols = 1024;  // about this many columns per split-K block (rounded up to kSplitUnit)

// ---- Dispatcher table: set from the GemvGpu.Speed figures on an H100 (gemvAutoVariant applies it) ----
// One rule per weight family. Accumulate GEMVs (attention output, FFN down: few outputs, long rows) run `accumulate`;
// Store and SwiGlu GEMVs run `few` below kManyOutputs outputs and `many` from there on.
struct AutoRule {
    GemvVariant accumulate;
    GemvVariant few;
    GemvVariant many;
};
constexpr int kManyOutputs = 8192;
// F32/F16/BF16: Pdl wins Accumulate (7B down 42.63 vs Wide 45.60 us), Wide the rest (7B gateup 78.68 vs 89.13 next).
constexpr AutoRule kFloatRule{GemvVariant::Pdl, GemvVariant::Wide, GemvVariant::Wide};
// Q8_0/Q4_0 (int8 path): Wide wins Accumulate (Q4_0 Tiny down 8.77 vs Pdl 11.45 us); Multi below 8192 outputs (Q8_0
// Tiny gateup 18.67 vs Wide 20.02), Wide from there (Q8_0 7B qkv 36.26 vs Multi 41.51; Q4_0 7B qkv prefers Multi).
constexpr AutoRule kInt8Rule{GemvVariant::Wide, GemvVariant::Multi, GemvVariant::Wide};
// Q4_K/Q6_K (float path, block decode): Multi wins nearly everywhere (Q4_K 7B qkv 46.19 vs Wide 61.70 us).
constexpr AutoRule kBlockQuantRule{GemvVariant::Multi, GemvVariant::Multi, GemvVariant::Multi};

// Launch shape: W warps per block, O outputs per warp.
template <int W, int O>
struct Tile {
    static constexpr int kWarps = W;
    static constexpr int kOuts = O;
    static constexpr int kThreads = W * kWarpSize;
};

struct Params {
    const uint8_t* w;
    int64_t rowBytes;
    int cols;
    int chunk;    // columns per block along K: cols, or with split-K a multiple of kSplitUnit (grid.y chunks)
    int slab;     // columns staged at a time: min(chunk, kSlab); sizes the dynamic shared memory
    int outputs;  // rows, or rows / 2 for SwiGlu
    const float* x;
    const float* norm;
    float eps;
    float* y;
};

template <GemvEpilogue E>
constexpr int kRowsPerOutput = E == GemvEpilogue::SwiGlu ? 2 : 1;

// 1 / rms(x) over cols values (every thread gets it), or 1 without a norm. Split-K blocks each take the whole input.
__device__ float normScale(const Params& p, float* scratch) {
    if (!p.norm)
        return 1.0f;
    float sum = 0.0f;
    for (int i = 4 * threadIdx.x; i < p.cols; i += 4 * blockDim.x) {
        const float4 v = __ldg(reinterpret_cast<const float4*>(p.x + i));
        sum += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    sum = blockReduceSum(sum, scratch);
    return rsqrtf(sum / static_cast<float>(p.cols) + p.eps);
}

// The rows one warp reads and the column range of its block. Row r < kCount belongs to output o0 + r % kOuts (its up
// row for r >= kOuts under SwiGlu); outputs past the end are clamped to the last one, re-read and not stored.
template <int kOuts, GemvEpilogue E>
struct WarpRows {
    static constexpr int kCount = kOuts * kRowsPerOutput<E>;
    const uint8_t* row[kCount];
    int o0;
    int k0, k1;  // columns [k0, k1)
    bool active;  // o0 < outputs; idle warps still take part in staging and barriers

    __device__ WarpRows(const Params& p, int warpsPerBlock) {
        o0 = (static_cast<int>(blockIdx.x) * warpsPerBlock + static_cast<int>(threadIdx.x) / kWarpSize) * kOuts;
        active = o0 < p.outputs;
        k0 = static_cast<int>(blockIdx.y) * p.chunk;
        k1 = min(p.cols, k0 + p.chunk);
#pragma unroll
        for (int r = 0; r < kCount; ++r) {
            const int o = min(o0 + r % kOuts, p.outputs - 1);
            row[r] = p.w + static_cast<int64_t>(o + (r / kOuts) * p.outputs) * p.rowBytes;
        }
    }

    // Pulls the block's column range of the rows toward L2 (one 128-byte line per lane and step) so it streams in
    // while the block stages its input; prefetch has no other effect. k0 is a whole number of blocks, so the byte
    // offset is exact.
    __device__ void prefetch(const Params& p) const {
        const int lane = threadIdx.x % kWarpSize;
        const int64_t b0 = p.rowBytes * k0 / p.cols;
        const int64_t b1 = p.rowBytes * k1 / p.cols;
#pragma unroll
        for (int r = 0; r < kCount; ++r)
            for (int64_t b = b0 + 128 * lane; b < b1; b += 128 * kWarpSize)
                asm volatile("prefetch.global.L2 [%0];" ::"l"(row[r] + b));
    }
};

// Under programmatic dependent launch (GemvVariant::Pdl) the kernel may start before the previous kernel on the
// stream has finished: wait for it (and its memory) before touching x, normWeight or y. The weight prefetch may come
// first: it only warms L2, which is coherent. Without such a launch (or before sm_90) there is nothing to wait for.
__device__ inline void waitForPreviousKernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
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
    for (int i = 4 * threadIdx.x; i < len; i += 4 * blockDim.x)
        *reinterpret_cast<float4*>(xs + i) = loadInput(p, c0 + i, scale);
}

// Stages input columns [c0, c0 + len) as two int8 levels (hi, lo) with per-block {d, d / 254, d sum(hi) + d / 254
// sum(lo), 0} (ds): the scheme of quantizeActivationRef, with the same IEEE operations so both sides agree. Four
// consecutive lanes share a block of 32; every thread runs the same number of rounds so the shuffles see full warps.
__device__ void stageInt8(const Params& p, int c0, int len, float scale, int8_t* hi, int8_t* lo, float4* ds) {
    const int groups = len / kQuantGroup;
    for (int base = 0; base < groups; base += blockDim.x) {
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

// Reduces the warp's partial dots and applies the epilogue. Split-K blocks (grid.y > 1, Accumulate only) add their
// partial dot atomically.
template <int kOuts, GemvEpilogue E>
__device__ inline void finish(const Params& p, const WarpRows<kOuts, E>& rows,
                              const float (&acc)[WarpRows<kOuts, E>::kCount]) {
    float d[WarpRows<kOuts, E>::kCount];
#pragma unroll
    for (int r = 0; r < WarpRows<kOuts, E>::kCount; ++r)
        d[r] = warpReduceSum(acc[r]);
    if (threadIdx.x % kWarpSize != 0)
        return;
#pragma unroll
    for (int j = 0; j < kOuts; ++j) {
        const int o = rows.o0 + j;
        if (o >= p.outputs)
            break;
        if constexpr (E == GemvEpilogue::Store) {
            p.y[o] = d[j];
        } else if constexpr (E == GemvEpilogue::Accumulate) {
            if (gridDim.y > 1)
                atomicAdd(p.y + o, d[j]);
            else
                p.y[o] += d[j];
        } else {
            p.y[o] = d[j] / (1.0f + __expf(-d[j])) * d[j + kOuts];
        }
    }
}

// Adds to acc the dots of the warp's rows with the input over columns [c0, c1) (whole tasks); input(col) returns the
// four input values from column col. kUnroll tasks per lane per round, all loads issued before any is consumed: a
// task past the range re-reads the last one (no branch splits the round) and its product is dropped.
template <typename C, int kOuts, GemvEpilogue E, typename In>
__device__ inline void dotTasks(const WarpRows<kOuts, E>& rows, int c0, int c1, In input,
                                float (&acc)[WarpRows<kOuts, E>::kCount]) {
    constexpr int kRows = WarpRows<kOuts, E>::kCount;
    // Tasks in flight per lane: 8 small ones (a whole 2048-wide F16 row), fewer of the big quantised ones, whose
    // decoded values take the registers; halved again from four rows per warp on.
    constexpr int kBase = C::kTask >= 64 ? 1 : C::kTask >= 32 ? 2 : 8;
    constexpr int kUnroll = kRows >= 4 && kBase > 1 ? kBase / 2 : kBase;
    const int tEnd = c1 / C::kTask;
    for (int t0 = c0 / C::kTask + static_cast<int>(threadIdx.x) % kWarpSize; t0 < tEnd; t0 += kUnroll * kWarpSize) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int t = min(t0 + u * kWarpSize, tEnd - 1);
#pragma unroll
            for (int r = 0; r < kRows; ++r) {
                float v[C::kTask];
                C::decode(rows.row[r], t, v);
                float part = 0.0f;
#pragma unroll
                for (int i = 0; i < C::kTask; i += 4) {
                    const float4 xv = input(t * C::kTask + i);
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

// Float path for every codec. grid = (ceil(outputs / (W O)), ceil(cols / chunk)); dynamic shared memory: slab floats.
template <typename T, typename C, GemvEpilogue E>
__global__ void __launch_bounds__(T::kThreads) gemvKernel(Params p) {
    using Rows = WarpRows<T::kOuts, E>;
    extern __shared__ float4 stage[];
    __shared__ float scratch[kWarpSize];
    const Rows rows(p, T::kWarps);
    if (rows.active)
        rows.prefetch(p);
    waitForPreviousKernel();
    float* xs = reinterpret_cast<float*>(stage);
    const float scale = normScale(p, scratch);
    float acc[Rows::kCount] = {};
    for (int c0 = rows.k0; c0 < rows.k1; c0 += p.slab) {
        const int c1 = min(c0 + p.slab, rows.k1);
        __syncthreads();  // the previous slab is consumed
        stageFloat(p, c0, c1 - c0, scale, xs);
        __syncthreads();
        if (rows.active)
            dotTasks<C>(rows, c0, c1, [&](int col) { return *reinterpret_cast<const float4*>(xs + col - c0); }, acc);
    }
    if (rows.active)
        finish<T::kOuts, E>(p, rows, acc);
}

// Integer path (Q8_0, Q4_0; cols a multiple of 64): one pair of blocks per lane per step. grid as gemvKernel;
// dynamic shared memory: slab bytes of hi, slab of lo, then slab / 32 float4 scales.
template <typename T, GgmlType Type, GemvEpilogue E>
__global__ void __launch_bounds__(T::kThreads) gemvInt8Kernel(Params p) {
    using C = IntCodec<Type>;
    using Rows = WarpRows<T::kOuts, E>;
    constexpr int kRows = Rows::kCount;
    constexpr int kPair = 2 * kActBlock;
    extern __shared__ float4 stage[];
    __shared__ float scratch[kWarpSize];
    int8_t* xHi = reinterpret_cast<int8_t*>(stage);
    int8_t* xLo = xHi + p.slab;
    float4* xD = reinterpret_cast<float4*>(xLo + p.slab);
    const Rows rows(p, T::kWarps);
    const int lane = threadIdx.x % kWarpSize;
    if (rows.active)
        rows.prefetch(p);
    waitForPreviousKernel();
    const float scale = normScale(p, scratch);
    float acc[kRows] = {};
    for (int c0 = rows.k0; c0 < rows.k1; c0 += p.slab) {
        const int len = min(p.slab, rows.k1 - c0);
        __syncthreads();
        stageInt8(p, c0, len, scale, xHi, xLo, xD);
        __syncthreads();
        if (!rows.active)
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
                const float4 s0 = xD[local / kActBlock];
                const float4 s1 = xD[local / kActBlock + 1];
#pragma unroll
                for (int r = 0; r < kRows; ++r) {
                    const float part =
                        C::pairDot(rows.row[r] + static_cast<int64_t>(q) * C::kPairBytes, hi, lo, s0, s1);
                    acc[r] += q0 + u * kWarpSize < qEnd ? part : 0.0f;
                }
            }
        }
    }
    if (rows.active)
        finish<T::kOuts, E>(p, rows, acc);
}

// Calls f(Tile<W, O>{}) for a resolved variant (Pdl's split along K is in its grid, see chunkOf).
template <typename F>
void withTile(GemvVariant v, F&& f) {
    switch (v) {
    case GemvVariant::Wide: f(Tile<16, 1>{}); break;
    case GemvVariant::Multi: f(Tile<4, 2>{}); break;
    default: f(Tile<4, 1>{}); break;  // Pdl (gemv() resolves Auto before launching)
    }
}

// Whether the current device runs programmatic dependent launch (compute capability 9.0 and up).
bool devicePdl() {
    int device = 0, major = 0;
    return cudaGetDevice(&device) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess && major >= 9;
}

template <GemvEpilogue E>
cudaError_t launch(cudaStream_t stream, GgmlType type, GemvVariant variant, const Params& p) {
    const bool int8 = usesInt8Activations(type, p.cols);
    cudaLaunchConfig_t config = {};
    config.stream = stream;
    cudaLaunchAttribute pdl = {};
    pdl.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    pdl.val.programmaticStreamSerializationAllowed = 1;
    config.attrs = &pdl;
    config.numAttrs = variant == GemvVariant::Pdl && devicePdl() ? 1 : 0;
    cudaError_t err = cudaSuccess;
    withTile(variant, [&](auto tile) {
        using T = decltype(tile);
        config.gridDim = dim3(ceilDiv(p.outputs, T::kWarps * T::kOuts), ceilDiv(p.cols, p.chunk));
        config.blockDim = dim3(T::kThreads);
        if (int8) {
            // int8 hi + lo + one float4 per block of 32 (slab a multiple of 64 on this path)
            config.dynamicSmemBytes = static_cast<size_t>(p.slab) * 2 + p.slab / kActBlock * sizeof(float4);
            err = type == GgmlType::Q8_0 ? cudaLaunchKernelEx(&config, gemvInt8Kernel<T, GgmlType::Q8_0, E>, p)
                                         : cudaLaunchKernelEx(&config, gemvInt8Kernel<T, GgmlType::Q4_0, E>, p);
            return;
        }
        config.dynamicSmemBytes = static_cast<size_t>(p.slab) * sizeof(float);  // float32 slab
        dispatchType(type,
                     [&](auto codec) { err = cudaLaunchKernelEx(&config, gemvKernel<T, decltype(codec), E>, p); });
    });
    return err;
}

// Columns per block: cols, or for a split-K (Pdl) Accumulate GEMV about kSplitCols rounded up to kSplitUnit (a chunk
// that would cover every column means no split).
int chunkOf(GemvVariant variant, GemvEpilogue epilogue, int cols) {
    if (variant != GemvVariant::Pdl || epilogue != GemvEpilogue::Accumulate)
        return cols;
    const int splits = static_cast<int>(ceilDiv(cols, kSplitCols));
    const int chunk = static_cast<int>(ceilDiv(ceilDiv(cols, splits), kSplitUnit)) * kSplitUnit;
    return chunk < cols ? chunk : cols;
}

}  // namespace

// Rule (table above): per weight family, by epilogue, then by output count. Families differ in what limits them: F16
// moves the most bytes per element, K-quants decode on the float path (staged-input reads per weight byte are
// highest), Q8_0/Q4_0 take the int8 path (rows of whole pairs of blocks) whose staging quantises the input; Q8_0/Q4_0
// rows that are not whole pairs of blocks take the float path and the block-quant rule.
GemvVariant gemvAutoVariant(const GemvArgs& a) {
    const bool floatType = a.type == GgmlType::F32 || a.type == GgmlType::F16 || a.type == GgmlType::BF16;
    const AutoRule& rule = floatType ? kFloatRule : usesInt8Activations(a.type, a.cols) ? kInt8Rule : kBlockQuantRule;
    if (a.epilogue == GemvEpilogue::Accumulate)
        return rule.accumulate;
    const int outputs = a.epilogue == GemvEpilogue::SwiGlu ? a.rows / 2 : a.rows;
    return outputs >= kManyOutputs ? rule.many : rule.few;
}

Status gemv(cudaStream_t stream, const GemvArgs& a) {
    RC_TRY(checkRowShape("gemv", a.type, a.cols));
    if (a.rows < 0 || (a.epilogue == GemvEpilogue::SwiGlu && a.rows % 2 != 0))
        return invalidArgument("gemv: row count " + std::to_string(a.rows) +
                               " must be non-negative (and even for SwiGlu)");
    if (a.rows == 0)
        return Status::success();
    const GemvVariant variant = a.variant == GemvVariant::Auto ? gemvAutoVariant(a) : a.variant;
    const int chunk = chunkOf(variant, a.epilogue, a.cols);
    const Params p{static_cast<const uint8_t*>(a.w),
                   rowBytes(a.type, a.cols),
                   a.cols,
                   chunk,
                   chunk < kSlab ? chunk : kSlab,
                   a.epilogue == GemvEpilogue::SwiGlu ? a.rows / 2 : a.rows,
                   a.x,
                   a.normWeight,
                   a.normEps,
                   a.y};
    cudaError_t err = cudaSuccess;
    switch (a.epilogue) {
    case GemvEpilogue::Store: err = launch<GemvEpilogue::Store>(stream, a.type, variant, p); break;
    case GemvEpilogue::Accumulate: err = launch<GemvEpilogue::Accumulate>(stream, a.type, variant, p); break;
    case GemvEpilogue::SwiGlu: err = launch<GemvEpilogue::SwiGlu>(stream, a.type, variant, p); break;
    }
    const Status last = checkLaunch("gemvKernel");  // also clears the error state a failed launch leaves
    return err == cudaSuccess ? last : cudaStatus(err, "gemvKernel");
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
