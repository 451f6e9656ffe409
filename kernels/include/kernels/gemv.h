// Decode matrix-vector products on the GPU straight from GGUF-encoded weights (CPU references: matvecRef, gemvRef).
// Bandwidth-bound: each warp streams one weight row (two for SwiGlu) and decodes it in registers against the input
// staged once per block in shared memory. The input may be RMS-normalised on the fly (every block recomputes the
// norm: a few KB of L2 reads) and the result can be added to the output (residual) or gated by SwiGLU, so a
// transformer layer's decode needs one launch per projection group and no elementwise kernels.
// Q8_0/Q4_0 rows (cols a multiple of 64) multiply an int8-quantised input with __dp4a (see usesInt8Activations).
// Thread safety: launchers enqueue on the given stream; call them from the thread that owns the CUDA state.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/fused_ref.h"
#include "kernels/ggml_types.h"
#include "roundchat/result.h"

namespace kernels {

// How gemv() spreads the work over the GPU (kernels/gemv.cu describes each); every variant computes the same maths
// and passes the same tests. Auto picks one per shape (gemvAutoVariant). Values are part of no file format.
enum class GemvVariant {
    Auto,
    Wide,   // 16 warps per block, one output per warp, the whole input staged per block
    Multi,  // 4 warps per block, two outputs per warp: twice the rows in flight per lane, half the staged reads
    Pdl,    // 4 warps per block, one output per warp, Accumulate GEMVs also split along the columns (split-K: atomicAdd
            // of partial dots, so the float summation order, hence the last bits, may vary run to run); launched with
            // programmatic dependent launch on sm_90 and up (elsewhere a plain split-K launch): it may begin while the
            // previous kernel on the stream finishes, prefetching weights, and reads x and y only after it
};

// One decode GEMV (borrowed device pointers; see gemvRef for the maths).
struct GemvArgs {
    GgmlType type = GgmlType::F32;
    const void* w = nullptr;  // (rows, cols) device bytes in `type`, 16-byte aligned
    int rows = 0;             // even for SwiGlu
    int cols = 0;             // a multiple of the block size (of 4 for F32, of 8 for F16 and BF16)
    const float* x = nullptr;           // (cols) device float32, 16-byte aligned
    const float* normWeight = nullptr;  // (cols) device float32, 16-byte aligned; null: x is used as is
    float normEps = 0.0f;
    GemvEpilogue epilogue = GemvEpilogue::Store;
    float* y = nullptr;  // (rows), or (rows / 2) for SwiGlu; device float32, must not alias x
    GemvVariant variant = GemvVariant::Auto;  // for tuning and tests; leave Auto otherwise
};

// The variant gemv() runs for `args` when args.variant is Auto (depends on the shape and epilogue only).
GemvVariant gemvAutoVariant(const GemvArgs& args);

// Types: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K.
roundchat::Status gemv(cudaStream_t stream, const GemvArgs& args);

// y = W x: gemv() with no norm and GemvEpilogue::Store.
roundchat::Status matvec(cudaStream_t stream, GgmlType type, const void* w, const float* x, float* y, int rows,
                         int cols);

}  // namespace kernels
