// CPU reference of RMSNorm (see kernels/reference.h).
#include <cmath>

#include "kernels/reference.h"

namespace kernels {

void rmsnormRef(float* out, const float* x, const float* weight, int rows, int dim, float eps) {
    for (int r = 0; r < rows; ++r) {
        const float* xr = x + static_cast<int64_t>(r) * dim;
        float* outr = out + static_cast<int64_t>(r) * dim;
        // Double accumulation keeps the reference independent of summation order for realistic dims.
        double sumSq = 0.0;
        for (int i = 0; i < dim; ++i) sumSq += static_cast<double>(xr[i]) * xr[i];
        const float inv = static_cast<float>(1.0 / std::sqrt(sumSq / dim + eps));
        for (int i = 0; i < dim; ++i) outr[i] = xr[i] * inv * weight[i];
    }
}

}  // namespace kernels
