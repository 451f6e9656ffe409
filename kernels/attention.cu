// Flash attention over the span-organised KV cache (fp16 or float32, KvType), for prefill and (split-K) decode.
//
// Every block owns a tile of query rows that share one kv head (rows enumerate (token, head-in-group) pairs, so the
// whole GQA group of a token shares every K/V load and a tile spans few positions, which keeps causal skipping
// tight) and one contiguous range of logical key indices (its split). It walks that range in key tiles: look up
// each key's cache slot through the span list (a tile may cross spans) and its position, skip the tile when no row
// of the block can see any of its keys (AttentionArgs' lag band), stage K and V in shared memory, then update the
// running max / denominator per row (online softmax) and the output accumulator.
// Two kernels implement that loop:
// - attentionMmaKernel<D> (head dims 64 and 128, fp16 cache): fp16 tensor cores (mma.sync), FlashAttention-2 style.
//   Each warp owns 16 rows; S = Q K^T, the softmax and P V stay in registers in the mma fragment layouts. On sm_80+
//   key tiles arrive by cp.async, double-buffered at head dim 64 (the next visible tile loads while this one
//   computes).
// - attentionKernel<KV> (any head dim that is a multiple of 8, either cache type): scalar float maths, one key per
//   lane. A float32 cache takes it at every head dim: its point is exact K/V, which fp16 mma operands would undo.
// With nSplits > 1 each split writes a normalised partial output and its log-sum-exp, and attentionMergeKernel
// combines them: out = sum_s exp(lse_s - m) out_s / sum_s exp(lse_s - m).
#include "kernels/attention.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>

#include "cuda_common.cuh"
#include "kv_element.cuh"

namespace kernels {

namespace {

constexpr float kNegInf = -__builtin_huge_valf();

// ---- lag band

// Key positions [lo, hi] that a query sees under the lag band (AttentionArgs::minLag/maxLag), clamped to int.
struct PosBand {
    int lo = INT_MAX;  // the default band is empty: padding rows see nothing
    int hi = INT_MIN;

    __device__ bool contains(int pos) const { return pos >= lo && pos <= hi; }
};

__device__ inline int clampToInt(long long x) {
    return static_cast<int>(max(static_cast<long long>(INT_MIN), min(static_cast<long long>(INT_MAX), x)));
}

// The band of a query at position p; INT_MIN marks a padding row (empty band).
__device__ inline PosBand visibleBand(const AttentionArgs& a, int p) {
    if (p == INT_MIN)
        return {};
    return {clampToInt(static_cast<long long>(p) - a.maxLag), clampToInt(static_cast<long long>(p) - a.minLag)};
}

// Over the rows of a block: `any` holds the keys some row may see (a tile with none of them is skipped), `all` the
// keys every row sees (a tile of those only needs no mask).
struct BlockBands {
    PosBand any;
    PosBand all;
};

// rowPos: (rows) query positions, INT_MIN for padding rows. A band's ends grow with the query position, so both
// bands follow from the extreme positions of the real rows.
__device__ inline BlockBands blockBands(const AttentionArgs& a, const int* rowPos, int rows) {
    int maxPos = INT_MIN;
    int minPos = INT_MAX;
    for (int r = 0; r < rows; ++r) {
        if (rowPos[r] != INT_MIN) {
            maxPos = max(maxPos, rowPos[r]);
            minPos = min(minPos, rowPos[r]);
        }
    }
    if (minPos > maxPos)
        return {};
    return {{visibleBand(a, minPos).lo, visibleBand(a, maxPos).hi},
            {visibleBand(a, maxPos).lo, visibleBand(a, minPos).hi}};
}

// ---- key tiles over the span list

// Moves (spanIdx, spanBase) forward to the span holding logical key `key` (or past the end).
__device__ inline void seekSpan(const KvSpan* spans, int nSpans, int key, int& spanIdx, int& spanBase) {
    while (spanIdx < nSpans && key >= spanBase + spans[spanIdx].count) {
        spanBase += spans[spanIdx].count;
        ++spanIdx;
    }
}

// Cursor over the logical keys [begin, end) of this block's split, in tiles of tileKeys keys.
struct KeyRange {
    int begin = 0;
    int end = 0;
    int spanIdx = 0;   // span holding the current tile's first key
    int spanBase = 0;  // logical index of that span's first key
    int nSpans = 0;

    // Split `split` of nSplits gets a whole number of tiles (the last ones may be short or empty).
    __device__ KeyRange(const AttentionArgs& a, int split, int tileKeys) : nSpans(*a.nSpans) {
        int total = 0;
        for (int s = 0; s < nSpans; ++s)
            total += a.spans[s].count;
        const int perSplit = (total + a.nSplits * tileKeys - 1) / (a.nSplits * tileKeys) * tileKeys;
        begin = min(total, split * perSplit);
        end = min(total, begin + perSplit);
        seekSpan(a.spans, nSpans, begin, spanIdx, spanBase);
    }

    // Cache slot and position of logical key `key` of the tile starting at the cursor; slot -1 and position INT_MAX
    // (masked for every query) past the end of the range.
    __device__ void lookup(const AttentionArgs& a, int key, int& slot, int& pos) const {
        slot = -1;
        pos = INT_MAX;
        if (key < end) {
            int s = spanIdx;
            int base = spanBase;
            seekSpan(a.spans, nSpans, key, s, base);
            slot = a.spans[s].start + key - base;
            pos = a.kvPos[slot];
        }
    }

    __device__ void advanceTo(const AttentionArgs& a, int key) { seekSpan(a.spans, nSpans, key, spanIdx, spanBase); }
};

// Index into (nQ, nHeads) of row r of the block's rows: token r / group, head kvh * group + r % group.
__device__ inline int64_t headRowIndex(int row, int group, int nHeads, int kvh) {
    return static_cast<int64_t>(row / group) * nHeads + kvh * group + row % group;
}

// Where a block writes: the final output, or with split-K its split's slice of the workspace.
__device__ inline void outputSlices(const AttentionArgs& a, int split, float*& outs, float*& lses) {
    const int64_t rowsTotal = static_cast<int64_t>(a.nQ) * a.nHeads;
    outs = a.nSplits > 1 ? a.workspace + split * rowsTotal * a.headDim : a.out;
    lses = a.nSplits > 1 ? a.workspace + a.nSplits * rowsTotal * a.headDim + split * rowsTotal : a.lse;
}

// ---- tensor-core kernel (head dims 64 and 128)
//
// Fragment layouts (PTX ISA, mma.m16n8k16 with .f16 inputs): lane = 4 g + t. A (16x16, row-major) registers
// a0..a3 hold the fp16 pairs (row g, cols 2t..2t+1), (g + 8, 2t), (g, 2t + 8), (g + 8, 2t + 8); B (16x8, k x n)
// b0, b1 hold (k 2t..2t+1, n g), (k 2t + 8.., n g); the fp32 accumulator c0..c3 holds (row g, cols 2t, 2t + 1) and
// (row g + 8, cols 2t, 2t + 1). So the S accumulators of two adjacent 8-key tiles are exactly the A fragment of P
// for a 16-key step of P V, after packing to fp16. Operands come from shared memory through ldmatrix, whose x4 form
// gives lane l the pair (row l / 4, cols 2 (l % 4)..) of each of four 8x8 matrices (the transpose with .trans) whose
// row addresses lanes 8j..8j+7 supply for matrix j.

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = kMmaWarps * kWarpSize;
constexpr int kMmaRows = 16 * kMmaWarps;  // query rows per block: 16 per warp, the mma M
constexpr int kMmaKeys = 64;              // keys per tile
constexpr int kPad = 8;                   // fp16 padding per shared row: rows 16 bytes apart mod 128, so the eight
                                          // row reads of each ldmatrix phase hit distinct banks
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int D>
struct MmaTile {
    // Stages of K/V: two (the next tile loads while this one computes) where they fit the 48 KB of static shared
    // memory, else one.
    static constexpr int kStages = D <= 64 ? 2 : 1;
    __half k[kStages][kMmaKeys][D + kPad];  // (keys, D) per stage; stage 0 holds the queries before the first tile
    __half v[kStages][kMmaKeys][D + kPad];
    int slot[kStages][kMmaKeys];    // -1 past the end of the range
    int keyPos[kStages][kMmaKeys];  // INT_MAX past the end of the range
    int rowPos[kMmaRows];           // INT_MIN for padding rows (they see nothing)
};
static_assert(kMmaRows <= kMmaKeys, "queries are staged in the key buffer");

__device__ inline uint32_t sharedAddress(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8x8 fp16 matrices; lane l supplies the address of row l % 8 of matrix l / 8. volatile: it reads shared
// memory written by other threads, so it must stay between the barriers around it.
__device__ inline void ldmatrixX4(uint32_t (&r)[4], const __half* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(sharedAddress(row)));
}

__device__ inline void ldmatrixX4Trans(uint32_t (&r)[4], const __half* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(sharedAddress(row)));
}

// d += a (16x16) * b (16x8) with fp32 accumulation.
__device__ inline void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    // sm_75 has m16n8k8 only: the k16 product is the k8 products over k 0-7 (a0, a1, b0) and k 8-15 (a2, a3, b1).
    asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(b0));
    asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[2]), "r"(a[3]), "r"(b1));
#endif
}

// 16-byte global -> shared copy, zero-filled when !valid (src must still be a mapped address). On sm_80+ it is
// asynchronous (cp.async): complete after copyWait<n> leaves at most n newer groups pending, visible to the block
// after the next barrier. sm_75 copies synchronously and the group calls do nothing.
__device__ inline void copy16(void* dst, const void* src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sharedAddress(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
#else
    *static_cast<Half8*>(dst) = valid ? *static_cast<const Half8*>(src) : Half8{};
#endif
}

__device__ inline void copyCommit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

template <int N>
__device__ inline void copyWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

__device__ inline uint32_t halfBits(__half2 h) {
    uint32_t u;
    memcpy(&u, &h, sizeof(u));
    return u;
}

// grid = (ceil(nQ * group / kMmaRows), nKvHeads, nSplits), kMmaThreads threads.
template <int D>
__global__ void __launch_bounds__(kMmaThreads) attentionMmaKernel(AttentionArgs a) {
    __shared__ MmaTile<D> sh;
    constexpr int kStages = MmaTile<D>::kStages;
    constexpr int kChunks = D / 8;                            // 16-byte chunks per row
    constexpr int kLoads = kMmaKeys * kChunks / kMmaThreads;  // chunks of K (and of V) per thread per tile
    constexpr int kKeyTiles = kMmaKeys / 8;                   // 8-key accumulator tiles of S
    constexpr int kDimTiles = D / 8;                          // 8-column accumulator tiles of the output
    const int group = a.nHeads / a.nKvHeads;
    const int kvh = blockIdx.y;
    const int split = blockIdx.z;
    const int rowBase = blockIdx.x * kMmaRows;
    const int nRows = a.nQ * group;
    const int tid = threadIdx.x;
    const int lane = tid % kWarpSize;
    const int warp = tid / kWarpSize;
    const int g = lane / 4;  // fragment row (and row + 8)
    const int t = lane % 4;  // fragment column pair
    // Offsets of the row this lane addresses for ldmatrix .x4 over a 16x16 block: lmRow within its 8x8 matrix,
    // lmHi = 8 for matrices 1 and 3, lmCol = 8 for matrices 2 and 3 (the callers apply them to rows or columns).
    const int lmRow = lane % 8;
    const int lmHi = (lane / 8) % 2 * 8;
    const int lmCol = lane / 16 * 8;

    // Queries scaled by scale * log2(e) (scores in base 2, so exp2 is one instruction) as fp16 in the key buffer.
    const float qScale = a.scale * kLog2e;
    for (int i = tid; i < kMmaRows * kChunks; i += kMmaThreads) {
        const int r = i / kChunks;
        const int c = i % kChunks * 8;
        Half8 h{};
        if (rowBase + r < nRows) {
            const float4* src =
                reinterpret_cast<const float4*>(a.q + headRowIndex(rowBase + r, group, a.nHeads, kvh) * D + c);
            const float4 x = src[0];
            const float4 y = src[1];
            h.h[0] = __floats2half2_rn(x.x * qScale, x.y * qScale);
            h.h[1] = __floats2half2_rn(x.z * qScale, x.w * qScale);
            h.h[2] = __floats2half2_rn(y.x * qScale, y.y * qScale);
            h.h[3] = __floats2half2_rn(y.z * qScale, y.w * qScale);
        }
        *reinterpret_cast<Half8*>(&sh.k[0][r][c]) = h;
    }
    if (tid < kMmaRows)
        sh.rowPos[tid] = rowBase + tid < nRows ? a.qPos[(rowBase + tid) / group] : INT_MIN;
    KeyRange range(a, split, kMmaKeys);
    __syncthreads();

    // Q fragments stay in registers: (16 rows of this warp) x D, one A fragment per 16 columns.
    uint32_t qf[D / 16][4];
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks)
        ldmatrixX4(qf[ks], &sh.k[0][warp * 16 + lmRow + lmHi][ks * 16 + lmCol]);
    // Tiles with no key in bands.any are skipped; tiles with every key in bands.all need no mask.
    const BlockBands bands = blockBands(a, sh.rowPos, kMmaRows);
    const int row0 = warp * 16 + g;  // this thread's rows: row0 and row0 + 8 (index h = 0, 1 below)
    const PosBand rowBand[2] = {visibleBand(a, sh.rowPos[row0]), visibleBand(a, sh.rowPos[row0 + 8])};
    __syncthreads();  // the first tile overwrites the queries

    float rowMax[2] = {kNegInf, kNegInf};  // running max of the base-2 scores
    float rowSum[2] = {0.0f, 0.0f};        // this thread's part of the denominator (relative to rowMax)
    float o[kDimTiles][4];
#pragma unroll
    for (int j = 0; j < kDimTiles; ++j)
        o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;

    // Thread tid < kMmaKeys looks up key tid of each tile one tile ahead, so the position load (a dependent gather
    // that decode, with few tiles per block, would otherwise wait for in every tile) overlaps the current tile.
    int slot = -1;
    int pos = INT_MAX;
    if (tid < kMmaKeys)
        range.lookup(a, range.begin + tid, slot, pos);

    // Finds the first tile at or after `from` that some row of the block can see (skipping the others costs only
    // their lookups), publishes its key table in `stage`, starts copying its keys and values there, sets `mask`
    // unless every row sees every key, and commits one copy group (empty when no tile is left). Returns the tile,
    // or range.end. Called by the whole block (it synchronises) when nothing reads that stage any more.
    auto fetchTile = [&](int from, int stage, bool& mask) {
        for (; from < range.end; from += kMmaKeys) {
            bool visible = false;
            bool unmasked = true;
            if (tid < kMmaKeys) {
                sh.slot[stage][tid] = slot;
                sh.keyPos[stage][tid] = pos;
                visible = slot >= 0 && bands.any.contains(pos);
                unmasked = slot >= 0 && bands.all.contains(pos);
            }
            range.advanceTo(a, from + kMmaKeys);
            if (tid < kMmaKeys)
                range.lookup(a, from + kMmaKeys + tid, slot, pos);
            if (__syncthreads_or(visible)) {
                mask = !__syncthreads_and(unmasked);
                break;
            }
        }
        if (from < range.end) {
            // 16 bytes per copy, consecutive threads along a key's row; keys past the range become zeros (P is 0
            // there, and 0 * garbage could be NaN).
#pragma unroll
            for (int j = 0; j < kLoads; ++j) {
                const int i = tid + j * kMmaThreads;
                const int key = i / kChunks;
                const int c = i % kChunks * 8;
                const int keySlot = sh.slot[stage][key];
                const int64_t off = (static_cast<int64_t>(max(keySlot, 0)) * a.nKvHeads + kvh) * D + c;
                copy16(&sh.k[stage][key][c], static_cast<const __half*>(a.k) + off, keySlot >= 0);
                copy16(&sh.v[stage][key][c], static_cast<const __half*>(a.v) + off, keySlot >= 0);
            }
        }
        copyCommit();
        return from;
    };

    bool needMask = false;
    bool nextNeedsMask = false;
    int st = 0;
    int tile = fetchTile(range.begin, 0, needMask);
    while (tile < range.end) {
        int next = range.end;
        if constexpr (kStages == 2) {
            next = fetchTile(tile + kMmaKeys, st ^ 1, nextNeedsMask);  // the other stage was released last tile
            copyWait<1>();
        } else {
            copyWait<0>();
        }
        __syncthreads();  // every thread's copies of this tile have landed

        // S = Q K^T: (16 rows) x (64 keys) per warp. K rows are keys, so the plain ldmatrix of the 16x16 block
        // (keys n0.., dims k0..) gives b0, b1 of the 8-key tile n0 (matrices 0, 1) and of n0 + 8 (matrices 2, 3).
        float s[kKeyTiles][4];
#pragma unroll
        for (int j = 0; j < kKeyTiles; ++j)
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
            for (int n = 0; n < kMmaKeys / 16; ++n) {
                uint32_t b[4];
                ldmatrixX4(b, &sh.k[st][n * 16 + lmRow + lmCol][ks * 16 + lmHi]);
                mma16816(s[2 * n], qf[ks], b[0], b[1]);
                mma16816(s[2 * n + 1], qf[ks], b[2], b[3]);
            }
        }
        if (needMask) {
#pragma unroll
            for (int j = 0; j < kKeyTiles; ++j) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    if (!rowBand[e / 2].contains(sh.keyPos[st][j * 8 + 2 * t + e % 2]))
                        s[j][e] = kNegInf;
                }
            }
        }

        // Online softmax. A row's 64 scores are spread over the 4 lanes of its quad.
        uint32_t p[kKeyTiles][2];  // fp16 pairs of P: [j][h] = row row0 + 8h, keys 8j + 2t, 8j + 2t + 1
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            float tileMax = kNegInf;
#pragma unroll
            for (int j = 0; j < kKeyTiles; ++j)
                tileMax = fmaxf(tileMax, fmaxf(s[j][2 * h], s[j][2 * h + 1]));
            tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, 1));
            tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, 2));
            const float newMax = fmaxf(rowMax[h], tileMax);
            // While a row has seen no key, subtracting 0 keeps exp2(-inf) = 0 for both P and the rescale.
            const float base = newMax == kNegInf ? 0.0f : newMax;
            const float corr = exp2f(rowMax[h] - base);
            rowMax[h] = newMax;
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < kKeyTiles; ++j) {
                const __half2 ph = __floats2half2_rn(exp2f(s[j][2 * h] - base), exp2f(s[j][2 * h + 1] - base));
                const float2 pf = __half22float2(ph);  // the denominator sums the rounded values P V uses
                sum += pf.x + pf.y;
                p[j][h] = halfBits(ph);
            }
            rowSum[h] = rowSum[h] * corr + sum;
#pragma unroll
            for (int j = 0; j < kDimTiles; ++j) {
                o[j][2 * h] *= corr;
                o[j][2 * h + 1] *= corr;
            }
        }

        // O += P V over 16-key steps. V rows are keys (the k of this product), so ldmatrix .trans of the 16x16 block
        // (keys k0.., dims n0..) gives b0, b1 of the 8-column tile n0 (matrices 0, 1) and of n0 + 8 (matrices 2, 3).
#pragma unroll
        for (int ks = 0; ks < kMmaKeys / 16; ++ks) {
            const uint32_t pa[4] = {p[2 * ks][0], p[2 * ks][1], p[2 * ks + 1][0], p[2 * ks + 1][1]};
#pragma unroll
            for (int n = 0; n < D / 16; ++n) {
                uint32_t b[4];
                ldmatrixX4Trans(b, &sh.v[st][ks * 16 + lmRow + lmHi][n * 16 + lmCol]);
                mma16816(o[2 * n], pa, b[0], b[1]);
                mma16816(o[2 * n + 1], pa, b[2], b[3]);
            }
        }
        __syncthreads();  // stage st may be refilled from here on
        if constexpr (kStages == 1)
            next = fetchTile(tile + kMmaKeys, 0, nextNeedsMask);
        tile = next;
        needMask = nextNeedsMask;
        st ^= kStages - 1;
    }

    float* outs;
    float* lses;
    outputSlices(a, split, outs, lses);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        float sum = rowSum[h];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int row = rowBase + row0 + 8 * h;
        if (row >= nRows)
            continue;
        const int64_t hr = headRowIndex(row, group, a.nHeads, kvh);
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
        for (int j = 0; j < kDimTiles; ++j)
            *reinterpret_cast<float2*>(outs + hr * D + j * 8 + 2 * t) =
                make_float2(o[j][2 * h] * inv, o[j][2 * h + 1] * inv);
        if (lses && t == 0)
            lses[hr] = sum > 0.0f ? (rowMax[h] + log2f(sum)) * kLn2 : kNegInf;
    }
}

// ---- scalar kernel (any head dim, either cache element type)

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kRows = 16;          // query rows per block
constexpr int kKeys = kWarpSize;   // keys per tile: one per lane in the softmax step
constexpr int kMaxD = kAttentionMaxHeadDim;
constexpr int kMaxAcc = kRows * kMaxD / kThreads;  // output values per thread

struct SharedTile {
    float q[kRows][kMaxD];       // pre-scaled queries
    float k[kKeys][kMaxD + 1];   // +1: lanes read different keys at the same d without bank conflicts
    float v[kKeys][kMaxD];
    float p[kRows][kKeys];       // probabilities of the current tile (relative to rowMax)
    float rowMax[kRows];
    float rowSum[kRows];
    float rowScale[kRows];       // rescale of the accumulator for the current tile
    int rowPos[kRows];           // INT_MIN for padding rows
    int slot[kKeys];             // -1 past the end of the range
    int keyPos[kKeys];
};

// grid = (ceil(nQ * group / kRows), nKvHeads, nSplits). KV: the cache element type (__half or float).
template <typename KV>
__global__ void __launch_bounds__(kThreads) attentionKernel(AttentionArgs a) {
    __shared__ SharedTile sh;
    const int D = a.headDim;
    const int group = a.nHeads / a.nKvHeads;
    const int kvh = blockIdx.y;
    const int split = blockIdx.z;
    const int rowBase = blockIdx.x * kRows;
    const int nRows = a.nQ * group;
    const int tid = threadIdx.x;
    const int lane = tid % kWarpSize;
    const int warp = tid / kWarpSize;

    if (tid < kRows) {
        sh.rowPos[tid] = rowBase + tid < nRows ? a.qPos[(rowBase + tid) / group] : INT_MIN;
        sh.rowMax[tid] = kNegInf;
        sh.rowSum[tid] = 0.0f;
    }
    for (int i = tid; i < kRows * D; i += kThreads) {
        const int r = i / D;
        const int d = i % D;
        sh.q[r][d] = rowBase + r < nRows
                         ? a.q[headRowIndex(rowBase + r, group, a.nHeads, kvh) * D + d] * a.scale
                         : 0.0f;
    }
    KeyRange range(a, split, kKeys);
    __syncthreads();
    const PosBand anyRow = blockBands(a, sh.rowPos, kRows).any;  // keys some row of the block may see

    float acc[kMaxAcc];
#pragma unroll
    for (int i = 0; i < kMaxAcc; ++i)
        acc[i] = 0.0f;

    for (int tile = range.begin; tile < range.end; tile += kKeys) {
        bool visible = false;
        if (tid < kKeys) {
            int slot, pos;
            range.lookup(a, tile + tid, slot, pos);
            sh.slot[tid] = slot;
            sh.keyPos[tid] = pos;
            visible = slot >= 0 && anyRow.contains(pos);
        }
        range.advanceTo(a, tile + kKeys);
        if (!__syncthreads_or(visible))
            continue;

        // Stage the tile: 8 values (16 or 32 bytes) per load; keys past the range become zeros, not garbage.
        const int chunks = D / 8;
        for (int i = tid; i < kKeys * chunks; i += kThreads) {
            const int kk = i / chunks;
            const int c = (i % chunks) * 8;
            const int slot = sh.slot[kk];
            const int64_t off = (static_cast<int64_t>(max(slot, 0)) * a.nKvHeads + kvh) * D + c;
            float kr[8], vr[8];
            loadKv8(static_cast<const KV*>(a.k) + off, slot >= 0, kr);
            loadKv8(static_cast<const KV*>(a.v) + off, slot >= 0, vr);
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                sh.k[kk][c + j] = kr[j];
                sh.v[kk][c + j] = vr[j];
            }
        }
        __syncthreads();

        // Scores and online softmax: lane = key, warp owns rows warp, warp + kWarps, ...
        for (int r = warp; r < kRows; r += kWarps) {
            float s = 0.0f;
            for (int d = 0; d < D; ++d)
                s = fmaf(sh.q[r][d], sh.k[lane][d], s);
            const bool ok = visibleBand(a, sh.rowPos[r]).contains(sh.keyPos[lane]);
            s = ok ? s : kNegInf;
            const float oldMax = sh.rowMax[r];
            const float newMax = fmaxf(oldMax, warpReduceMax(s));
            const float p = ok ? __expf(s - newMax) : 0.0f;
            const float sum = warpReduceSum(p);
            sh.p[r][lane] = p;
            __syncwarp();
            if (lane == 0) {
                const float corr = oldMax == kNegInf ? 0.0f : __expf(oldMax - newMax);
                sh.rowScale[r] = corr;
                sh.rowSum[r] = sh.rowSum[r] * corr + sum;
                sh.rowMax[r] = newMax;
            }
        }
        __syncthreads();

        // acc[i] holds output o = tid + i * kThreads: row o / D, dim o % D.
#pragma unroll
        for (int i = 0; i < kMaxAcc; ++i) {
            const int o = tid + i * kThreads;
            if (o < kRows * D) {
                const int r = o / D;
                const int d = o % D;
                float x = acc[i] * sh.rowScale[r];
#pragma unroll 8
                for (int kk = 0; kk < kKeys; ++kk)
                    x = fmaf(sh.p[r][kk], sh.v[kk][d], x);
                acc[i] = x;
            }
        }
        __syncthreads();
    }

    float* outs;
    float* lses;
    outputSlices(a, split, outs, lses);
#pragma unroll
    for (int i = 0; i < kMaxAcc; ++i) {
        const int o = tid + i * kThreads;
        if (o < kRows * D && rowBase + o / D < nRows) {
            const float sum = sh.rowSum[o / D];
            outs[headRowIndex(rowBase + o / D, group, a.nHeads, kvh) * D + o % D] = sum > 0.0f ? acc[i] / sum : 0.0f;
        }
    }
    if (tid < kRows && rowBase + tid < nRows && lses) {
        const float sum = sh.rowSum[tid];
        lses[headRowIndex(rowBase + tid, group, a.nHeads, kvh)] = sum > 0.0f ? sh.rowMax[tid] + logf(sum) : kNegInf;
    }
}

// ---- split-K merge and cache store

// workspace: (nSplits, rows, D) outputs then (nSplits, rows) lse; out: (rows, D). grid = rows, block >= D.
__global__ void attentionMergeKernel(const float* workspace, float* out, float* lse, int rows, int D, int nSplits) {
    const int row = blockIdx.x;
    const int d = threadIdx.x;
    const float* outs = workspace;
    const float* lses = workspace + static_cast<int64_t>(nSplits) * rows * D;
    float m = kNegInf;
    for (int s = 0; s < nSplits; ++s)
        m = fmaxf(m, lses[static_cast<int64_t>(s) * rows + row]);
    if (m == kNegInf) {
        if (d < D)
            out[static_cast<int64_t>(row) * D + d] = 0.0f;
        if (lse && d == 0)
            lse[row] = kNegInf;
        return;
    }
    float weightSum = 0.0f;
    float acc = 0.0f;
    for (int s = 0; s < nSplits; ++s) {
        const float l = lses[static_cast<int64_t>(s) * rows + row];
        const float w = l == kNegInf ? 0.0f : __expf(l - m);
        weightSum += w;
        if (d < D && w > 0.0f)
            acc += w * outs[(static_cast<int64_t>(s) * rows + row) * D + d];
    }
    if (d < D)
        out[static_cast<int64_t>(row) * D + d] = acc / weightSum;
    if (lse && d == 0)
        lse[row] = m + logf(weightSum);
}

// k, v: (nTokens, kvDim) float; caches: (capacity, kvDim) of the element type KV (__half or float).
template <typename KV>
__global__ void kvStoreKernel(const float* k, const float* v, KV* kCache, KV* vCache, const int32_t* slots,
                              int nTokens, int kvDim) {
    const int64_t n = static_cast<int64_t>(nTokens) * kvDim;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int t = static_cast<int>(i / kvDim);
        const int64_t dst = static_cast<int64_t>(slots[t]) * kvDim + i % kvDim;
        storeKv(kCache + dst, k[i]);
        storeKv(vCache + dst, v[i]);
    }
}

}  // namespace

size_t attentionWorkspaceFloats(int nQ, int nHeads, int headDim, int nSplits) {
    return static_cast<size_t>(nSplits) * nQ * nHeads * (headDim + 1);
}

Status attention(cudaStream_t stream, const AttentionArgs& a) {
    if (a.nQ < 0 || a.nHeads <= 0 || a.nKvHeads <= 0 || a.nHeads % a.nKvHeads != 0)
        return invalidArgument("attention: nHeads must be a positive multiple of nKvHeads");
    if (a.headDim <= 0 || a.headDim % 8 != 0 || a.headDim > kAttentionMaxHeadDim)
        return invalidArgument("attention: headDim " + std::to_string(a.headDim) +
                               " unsupported (multiples of 8 up to " + std::to_string(kAttentionMaxHeadDim) + ")");
    if (a.nSplits < 1 || a.nSplits > 65535 || (a.nSplits > 1 && !a.workspace))
        return invalidArgument("attention: nSplits must be in [1, 65535], with a workspace when above 1");
    if (a.minLag < 0 || a.maxLag < a.minLag)
        return invalidArgument("attention: the lag band needs 0 <= minLag <= maxLag");
    if (a.nQ == 0)
        return Status::success();
    // Kernel table: (head dim 64 or 128, F16 cache) -> tensor-core kernel; every other (multiple of 8, F16 or F32)
    // -> the scalar kernel for that element type.
    const int64_t rows = static_cast<int64_t>(a.nQ) * (a.nHeads / a.nKvHeads);
    const dim3 mmaGrid(ceilDiv(rows, kMmaRows), a.nKvHeads, a.nSplits);
    if (a.kvType == KvType::F16 && a.headDim == 64) {
        attentionMmaKernel<64><<<mmaGrid, kMmaThreads, 0, stream>>>(a);
    } else if (a.kvType == KvType::F16 && a.headDim == 128) {
        attentionMmaKernel<128><<<mmaGrid, kMmaThreads, 0, stream>>>(a);
    } else {
        const dim3 grid(ceilDiv(rows, kRows), a.nKvHeads, a.nSplits);
        withKvElement(a.kvType, [&](auto kv) {
            attentionKernel<typename decltype(kv)::type><<<grid, kThreads, 0, stream>>>(a);
        });
    }
    RC_TRY(checkLaunch("attentionKernel"));
    if (a.nSplits == 1)
        return Status::success();
    attentionMergeKernel<<<a.nQ * a.nHeads, kAttentionMaxHeadDim, 0, stream>>>(a.workspace, a.out, a.lse,
                                                                            a.nQ * a.nHeads, a.headDim, a.nSplits);
    return checkLaunch("attentionMergeKernel");
}

Status kvStore(cudaStream_t stream, const float* k, const float* v, void* kCache, void* vCache, KvType kvType,
               const int32_t* slots, int nTokens, int kvDim) {
    if (nTokens < 0 || kvDim <= 0)
        return invalidArgument("kvStore: bad shape");
    if (nTokens == 0)
        return Status::success();
    constexpr int kStoreThreads = 256;
    const unsigned grid = std::min(ceilDiv(static_cast<int64_t>(nTokens) * kvDim, kStoreThreads), 65535u);
    withKvElement(kvType, [&](auto kv) {
        using KV = typename decltype(kv)::type;
        kvStoreKernel<<<grid, kStoreThreads, 0, stream>>>(k, v, static_cast<KV*>(kCache), static_cast<KV*>(vCache),
                                                          slots, nTokens, kvDim);
    });
    return checkLaunch("kvStoreKernel");
}

}  // namespace kernels
