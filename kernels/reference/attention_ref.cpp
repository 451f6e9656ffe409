// CPU reference of GQA attention masked by a lag band with log-sum-exp output, and of merging two partial attentions.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/reference.h"

namespace kernels {

void attentionRef(const float* q, const float* k, const float* v, float* out, float* lse, const int32_t* qPos,
                  const int32_t* kvPos, int nQ, int nKv, int nHeads, int nKvHeads, int headDim, float scale,
                  int minLag, int maxLag) {
    const int group = nHeads / nKvHeads;  // query heads per kv head
    auto hidden = [&](int i, int j) {
        const int64_t lag = static_cast<int64_t>(qPos[i]) - kvPos[j];
        return lag < minLag || lag > maxLag;
    };
    const int64_t kvStride = static_cast<int64_t>(nKvHeads) * headDim;
    std::vector<float> scores(static_cast<size_t>(nKv));
    std::vector<double> acc(static_cast<size_t>(headDim));
    for (int i = 0; i < nQ; ++i) {
        for (int h = 0; h < nHeads; ++h) {
            const float* qh = q + (static_cast<int64_t>(i) * nHeads + h) * headDim;
            const int64_t kvOff = static_cast<int64_t>(h / group) * headDim;
            float* outh = out + (static_cast<int64_t>(i) * nHeads + h) * headDim;
            float maxScore = -std::numeric_limits<float>::infinity();
            for (int j = 0; j < nKv; ++j) {
                if (hidden(i, j))
                    continue;
                const float* kj = k + j * kvStride + kvOff;
                float s = 0.0f;
                for (int d = 0; d < headDim; ++d) s += qh[d] * kj[d];
                scores[j] = s * scale;
                maxScore = std::max(maxScore, scores[j]);
            }
            if (maxScore == -std::numeric_limits<float>::infinity()) {  // no visible key
                for (int d = 0; d < headDim; ++d) outh[d] = 0.0f;
                if (lse)
                    lse[static_cast<int64_t>(i) * nHeads + h] = -std::numeric_limits<float>::infinity();
                continue;
            }
            double sum = 0.0;
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int j = 0; j < nKv; ++j) {
                if (hidden(i, j))
                    continue;
                const double p = std::exp(static_cast<double>(scores[j] - maxScore));
                sum += p;
                const float* vj = v + j * kvStride + kvOff;
                for (int d = 0; d < headDim; ++d) acc[d] += p * vj[d];
            }
            for (int d = 0; d < headDim; ++d) outh[d] = static_cast<float>(acc[d] / sum);
            if (lse)
                lse[static_cast<int64_t>(i) * nHeads + h] = maxScore + static_cast<float>(std::log(sum));
        }
    }
}

void attentionMergeRef(float* outA, float* lseA, const float* outB, const float* lseB, int n, int headDim) {
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    for (int r = 0; r < n; ++r) {
        const float a = lseA[r];
        const float b = lseB[r];
        float* oa = outA + static_cast<int64_t>(r) * headDim;
        const float* ob = outB + static_cast<int64_t>(r) * headDim;
        if (b == kNegInf)  // B saw no key: A is already the merged result
            continue;
        if (a == kNegInf) {
            for (int d = 0; d < headDim; ++d) oa[d] = ob[d];
            lseA[r] = b;
            continue;
        }
        const float m = std::max(a, b);
        const float wa = std::exp(a - m);
        const float wb = std::exp(b - m);
        const float inv = 1.0f / (wa + wb);
        for (int d = 0; d < headDim; ++d) oa[d] = (oa[d] * wa + ob[d] * wb) * inv;
        lseA[r] = m + std::log(wa + wb);
    }
}

}  // namespace kernels
