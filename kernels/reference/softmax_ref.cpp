// CPU reference of a numerically stable softmax.
#include <algorithm>
#include <cmath>

#include "kernels/reference.h"

namespace kernels {

void softmaxRef(float* x, int n) {
    if (n <= 0)
        return;
    const float maxVal = *std::max_element(x, x + n);
    double sum = 0.0;
    for (int i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - maxVal);
        sum += x[i];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace kernels
