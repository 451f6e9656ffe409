// Prefill GEMM: dequantise the weight matrix to fp16 (one thread per task), round the activations to fp16, and let
// cuBLAS multiply on tensor cores with float32 accumulation and output.
#include "kernels/gemm.h"

#include <algorithm>
#include <string>

#include "quant_decode.cuh"

namespace kernels {

namespace {

constexpr int kThreads = 128;

// src: (rows, cols) encoded; dst: (rows, cols) fp16. grid = (ceil(tasks per row / kThreads), rows).
template <typename C>
__global__ void dequantizeToF16Kernel(const uint8_t* src, int64_t rowBytes, int cols, __half* dst) {
    const int task = blockIdx.x * blockDim.x + threadIdx.x;
    if (task >= cols / C::kTask)
        return;
    float v[C::kTask];
    C::decode(src + blockIdx.y * rowBytes, task, v);
    __half2* out = reinterpret_cast<__half2*>(dst + static_cast<int64_t>(blockIdx.y) * cols +
                                              static_cast<int64_t>(task) * C::kTask);
#pragma unroll
    for (int i = 0; i < C::kTask / 2; ++i)
        out[i] = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
}

__global__ void convertToF16Kernel(const float* src, __half* dst, int64_t n) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}

}  // namespace

Status dequantizeToF16(cudaStream_t stream, GgmlType type, const void* src, uint16_t* dst, int rows, int cols) {
    RC_TRY(checkRowShape("dequantizeToF16", type, cols));
    if (rows < 0)
        return invalidArgument("dequantizeToF16: negative row count");
    if (rows == 0)
        return Status::success();
    dispatchType(type, [&](auto codec) {
        using C = decltype(codec);
        const unsigned blocksPerRow = ceilDiv(cols / C::kTask, kThreads);
        const int64_t rb = rowBytes(type, cols);
        // grid.y is limited to 65535: walk the rows in slabs.
        for (int r0 = 0; r0 < rows; r0 += 65535) {
            const int n = std::min(rows - r0, 65535);
            dequantizeToF16Kernel<C><<<dim3(blocksPerRow, n), kThreads, 0, stream>>>(
                static_cast<const uint8_t*>(src) + r0 * rb, rb, cols,
                reinterpret_cast<__half*>(dst) + static_cast<int64_t>(r0) * cols);
        }
    });
    return checkLaunch("dequantizeToF16Kernel");
}

Status convertToF16(cudaStream_t stream, const float* src, uint16_t* dst, int64_t n) {
    if (n < 0)
        return invalidArgument("convertToF16: negative size");
    if (n == 0)
        return Status::success();
    const unsigned grid = std::min(ceilDiv(n, kThreads * 4), 65535u);
    convertToF16Kernel<<<grid, kThreads, 0, stream>>>(src, reinterpret_cast<__half*>(dst), n);
    return checkLaunch("convertToF16Kernel");
}

Status matmul(cudaStream_t stream, cublasHandle_t cublas, GgmlType type, const void* w, int rows, int cols,
              const float* x, int nTokens, float* y, const GemmScratch& scratch) {
    if (rows <= 0 || cols <= 0 || nTokens < 0)
        return invalidArgument("matmul: bad shape");
    if (nTokens == 0)
        return Status::success();
    RC_TRY(cublasStatus(cublasSetStream(cublas, stream), "cublasSetStream"));
    // Column-major view: W is (cols x rows) with ld cols, X is (cols x nTokens), Y is (rows x nTokens) = W^T X.
    const float alpha = 1.0f;
    const float beta = 0.0f;
    if (type == GgmlType::F32)  // full float32 (no tensor cores): F32 files are the small reference models
        return cublasStatus(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, rows, nTokens, cols, &alpha, w, CUDA_R_32F,
                                         cols, x, CUDA_R_32F, cols, &beta, y, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F,
                                         CUBLAS_GEMM_DEFAULT),
                            "cublasGemmEx(F32)");
    const size_t weightElems = static_cast<size_t>(rows) * cols;
    const size_t actElems = static_cast<size_t>(nTokens) * cols;
    if (actElems > scratch.activationElems || (type != GgmlType::F16 && weightElems > scratch.weightElems))
        return invalidArgument("matmul: scratch too small for a " + std::to_string(rows) + " x " +
                               std::to_string(cols) + " weight and " + std::to_string(nTokens) + " tokens");
    const void* w16 = w;
    if (type != GgmlType::F16) {
        RC_TRY(dequantizeToF16(stream, type, w, scratch.weights, rows, cols));
        w16 = scratch.weights;
    }
    RC_TRY(convertToF16(stream, x, scratch.activations, static_cast<int64_t>(actElems)));
    return cublasStatus(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, rows, nTokens, cols, &alpha, w16, CUDA_R_16F,
                                     cols, scratch.activations, CUDA_R_16F, cols, &beta, y, CUDA_R_32F, rows,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                        "cublasGemmEx");
}

}  // namespace kernels
