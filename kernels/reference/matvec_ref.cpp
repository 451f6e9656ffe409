#include "kernels/quant_ref.h"
#include "kernels/reference.h"

namespace kernels {

void matvecRef(GgmlType type, const void* w, const float* x, float* y, int rows, int cols) {
    const auto* bytes = static_cast<const uint8_t*>(w);
    const int64_t stride = rowBytes(type, cols);
    for (int r = 0; r < rows; ++r) y[r] = dotRowRef(type, bytes + r * stride, x, cols);
}

void embeddingRef(GgmlType type, const void* table, int cols, const int32_t* tokens, int n, float* out) {
    const auto* bytes = static_cast<const uint8_t*>(table);
    const int64_t stride = rowBytes(type, cols);
    for (int i = 0; i < n; ++i)
        dequantizeRowRef(type, bytes + tokens[i] * stride, out + static_cast<int64_t>(i) * cols, cols);
}

}  // namespace kernels
