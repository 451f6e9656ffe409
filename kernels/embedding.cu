// Embedding lookup: one thread decodes one task (a run of Codec<T>::kTask elements) of a looked-up row.
#include "kernels/embedding.h"

#include "quant_decode.cuh"

namespace kernels {

namespace {

constexpr int kThreads = 128;

// table: (vocab, cols) encoded; out: (n, cols). grid.x covers the tasks of a row, grid.y = n.
template <typename C>
__global__ void embeddingKernel(const uint8_t* table, int64_t rowBytes, int cols, const int32_t* tokens, float* out) {
    const int task = blockIdx.x * blockDim.x + threadIdx.x;
    if (task >= cols / C::kTask)
        return;
    float v[C::kTask];
    C::decode(table + tokens[blockIdx.y] * rowBytes, task, v);
    float* dst = out + static_cast<int64_t>(blockIdx.y) * cols + static_cast<int64_t>(task) * C::kTask;
#pragma unroll
    for (int i = 0; i < C::kTask; ++i)
        dst[i] = v[i];
}

}  // namespace

Status embedding(cudaStream_t stream, GgmlType type, const void* table, int cols, const int32_t* tokens, int n,
                 float* out) {
    RC_TRY(checkRowShape("embedding", type, cols));
    if (n < 0 || n > 65535)
        return invalidArgument("embedding: token count must be in [0, 65535]");
    if (n == 0)
        return Status::success();
    dispatchType(type, [&](auto codec) {
        using C = decltype(codec);
        const dim3 grid(ceilDiv(cols / C::kTask, kThreads), n);
        embeddingKernel<C><<<grid, kThreads, 0, stream>>>(static_cast<const uint8_t*>(table), rowBytes(type, cols),
                                                           cols, tokens, out);
    });
    return checkLaunch("embeddingKernel");
}

}  // namespace kernels
