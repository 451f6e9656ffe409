// Decode GEMV: one warp per weight row. Lane l decodes tasks l, l + 32, ... of the row (consecutive lanes read
// consecutive bytes, so every load instruction of the warp is coalesced), multiplies them with the matching slice of
// x and the warp reduces. Several rows per block keep enough loads in flight to approach memory bandwidth.
#include "kernels/gemv.h"

#include "quant_decode.cuh"

namespace kernels {

namespace {

constexpr int kWarpsPerBlock = 4;

// w: (rows, cols) encoded, rowBytes per row; x: (cols); y: (rows). grid = ceil(rows / kWarpsPerBlock).
template <typename C>
__global__ void __launch_bounds__(kWarpsPerBlock * kWarpSize)
    matvecKernel(const uint8_t* __restrict__ w, int64_t rowBytes, const float* __restrict__ x, float* __restrict__ y,
                 int rows, int tasks) {
    const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarpSize;
    const int lane = threadIdx.x % kWarpSize;
    if (row >= rows)
        return;
    const uint8_t* r = w + row * rowBytes;
    float acc = 0.0f;
#pragma unroll 4
    for (int t = lane; t < tasks; t += kWarpSize) {
        float v[C::kTask];
        C::decode(r, t, v);
        const float* xs = x + static_cast<int64_t>(t) * C::kTask;
#pragma unroll
        for (int i = 0; i < C::kTask; i += 4) {
            const float4 xv = __ldg(reinterpret_cast<const float4*>(xs + i));
            acc = fmaf(v[i], xv.x, acc);
            acc = fmaf(v[i + 1], xv.y, acc);
            acc = fmaf(v[i + 2], xv.z, acc);
            acc = fmaf(v[i + 3], xv.w, acc);
        }
    }
    acc = warpReduceSum(acc);
    if (lane == 0)
        y[row] = acc;
}

}  // namespace

Status matvec(cudaStream_t stream, GgmlType type, const void* w, const float* x, float* y, int rows, int cols) {
    RC_TRY(checkRowShape("matvec", type, cols));
    if (rows < 0)
        return invalidArgument("matvec: negative row count");
    if (rows == 0)
        return Status::success();
    dispatchType(type, [&](auto codec) {
        using C = decltype(codec);
        matvecKernel<C><<<ceilDiv(rows, kWarpsPerBlock), kWarpsPerBlock * kWarpSize, 0, stream>>>(
            static_cast<const uint8_t*>(w), rowBytes(type, cols), x, y, rows, cols / C::kTask);
    });
    return checkLaunch("matvecKernel");
}

}  // namespace kernels
