// CPU reference of llama NORM RoPE (adjacent pairs) and of re-rotating cached keys to new positions.
#include <cmath>
#include <vector>

#include "kernels/reference.h"

namespace kernels {

namespace {

// cos and sin of the angle delta * freqBase^(-2i / ropeDim) of each pair i, computed in double: positions reach
// 1e5+, where a float angle loses several digits.
void pairAngles(double delta, int ropeDim, float freqBase, std::vector<float>& c, std::vector<float>& s) {
    c.resize(static_cast<size_t>(ropeDim / 2));
    s.resize(c.size());
    for (int i = 0; i < ropeDim / 2; ++i) {
        const double theta = delta * std::pow(static_cast<double>(freqBase), -2.0 * i / ropeDim);
        c[static_cast<size_t>(i)] = static_cast<float>(std::cos(theta));
        s[static_cast<size_t>(i)] = static_cast<float>(std::sin(theta));
    }
}

// Rotates the first ropeDim dims of every head of one token by the given pair angles.
void rotateToken(float* x, const std::vector<float>& c, const std::vector<float>& s, int nHeads, int headDim) {
    for (size_t i = 0; i < c.size(); ++i) {
        for (int h = 0; h < nHeads; ++h) {
            float* pair = x + static_cast<int64_t>(h) * headDim + 2 * i;
            const float a = pair[0];
            const float b = pair[1];
            pair[0] = a * c[i] - b * s[i];
            pair[1] = a * s[i] + b * c[i];
        }
    }
}

}  // namespace

void ropeRef(float* x, const int32_t* positions, int nTokens, int nHeads, int headDim, int ropeDim, float freqBase) {
    std::vector<float> c, s;
    for (int t = 0; t < nTokens; ++t) {
        pairAngles(positions[t], ropeDim, freqBase, c, s);
        rotateToken(x + static_cast<int64_t>(t) * nHeads * headDim, c, s, nHeads, headDim);
    }
}

void ropeShiftRef(float* k, const int32_t* fromPositions, const int32_t* toPositions, int nTokens, int nHeads,
                  int headDim, int ropeDim, float freqBase) {
    std::vector<float> c, s;
    for (int t = 0; t < nTokens; ++t) {
        // A shifted round moves all its tokens by one delta: its angles are computed once.
        const double delta = static_cast<double>(toPositions[t]) - fromPositions[t];
        if (t == 0 || delta != static_cast<double>(toPositions[t - 1]) - fromPositions[t - 1])
            pairAngles(delta, ropeDim, freqBase, c, s);
        rotateToken(k + static_cast<int64_t>(t) * nHeads * headDim, c, s, nHeads, headDim);
    }
}

}  // namespace kernels
