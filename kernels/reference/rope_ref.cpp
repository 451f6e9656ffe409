// CPU reference of llama NORM RoPE (adjacent pairs) and of re-rotating cached keys to new positions.
#include <cmath>

#include "kernels/reference.h"

namespace kernels {

namespace {

// Rotates the first ropeDim dims of every head of one token by angle delta * freqBase^(-2i / ropeDim) for pair i.
// Angles are computed in double: positions reach 1e5+, where a float angle loses several digits.
void rotateToken(float* x, double delta, int nHeads, int headDim, int ropeDim, float freqBase) {
    for (int i = 0; i < ropeDim / 2; ++i) {
        const double theta = delta * std::pow(static_cast<double>(freqBase), -2.0 * i / ropeDim);
        const float c = static_cast<float>(std::cos(theta));
        const float s = static_cast<float>(std::sin(theta));
        for (int h = 0; h < nHeads; ++h) {
            float* pair = x + static_cast<int64_t>(h) * headDim + 2 * i;
            const float a = pair[0];
            const float b = pair[1];
            pair[0] = a * c - b * s;
            pair[1] = a * s + b * c;
        }
    }
}

}  // namespace

void ropeRef(float* x, const int32_t* positions, int nTokens, int nHeads, int headDim, int ropeDim, float freqBase) {
    for (int t = 0; t < nTokens; ++t)
        rotateToken(x + static_cast<int64_t>(t) * nHeads * headDim, positions[t], nHeads, headDim, ropeDim, freqBase);
}

void ropeShiftRef(float* k, const int32_t* fromPositions, const int32_t* toPositions, int nTokens, int nHeads,
                  int headDim, int ropeDim, float freqBase) {
    for (int t = 0; t < nTokens; ++t) {
        const double delta = static_cast<double>(toPositions[t]) - fromPositions[t];
        rotateToken(k + static_cast<int64_t>(t) * nHeads * headDim, delta, nHeads, headDim, ropeDim, freqBase);
    }
}

}  // namespace kernels
