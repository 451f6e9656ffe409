// CPU reference of the SwiGLU gate: silu(gate) * up.
#include <cmath>

#include "kernels/reference.h"

namespace kernels {

void swigluRef(float* out, const float* gate, const float* up, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

}  // namespace kernels
