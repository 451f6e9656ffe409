// attentionMerge() against attentionMergeRef on random partials (rows where either part saw no key included), and
// end to end: two partial attentions over disjoint key sets (CPU reference) merged on the GPU equal attention over
// the union. Tolerance 2e-5 absolute + 2e-5 relative: the kernels are built with --use_fast_math (exp/log).
#include "kernels/attention_merge.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/reference.h"

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

TEST(AttentionMergeGpu, MatchesReference) {
    const int shapes[][2] = {{1, 64}, {7, 128}, {300, 64}, {33, 8}, {4, 200}};
    for (const auto& s : shapes) {
        const int n = s[0], headDim = s[1];
        std::vector<float> outA = gputest::randomFloats(static_cast<size_t>(n) * headDim, 1 + n);
        const std::vector<float> outB = gputest::randomFloats(outA.size(), 2 + n);
        std::vector<float> lseA = gputest::randomFloats(static_cast<size_t>(n), 3 + n, -20.0f, 20.0f);
        std::vector<float> lseB = gputest::randomFloats(static_cast<size_t>(n), 4 + n, -20.0f, 20.0f);
        lseA[0] = kNegInf;  // A empty: B is the result
        if (n > 2) {
            lseB[1] = kNegInf;  // B empty: A unchanged
            lseA[2] = lseB[2] = kNegInf;
        }
        auto dOutA = gputest::toDevice(outA);
        auto dLseA = gputest::toDevice(lseA);
        auto dOutB = gputest::toDevice(outB);
        auto dLseB = gputest::toDevice(lseB);
        kernels::attentionMergeRef(outA.data(), lseA.data(), outB.data(), lseB.data(), n, headDim);
        ASSERT_TRUE(kernels::attentionMerge(nullptr, dOutA.data(), dLseA.data(), dOutB.data(), dLseB.data(), n, headDim)
                        .ok());
        gputest::expectClose(gputest::toHost(dOutA), outA, 2e-5f, 2e-5f, "merged output");
        const std::vector<float> gotLse = gputest::toHost(dLseA);
        for (int r = 0; r < n; ++r) {
            if (std::isinf(lseA[static_cast<size_t>(r)]))
                EXPECT_EQ(gotLse[static_cast<size_t>(r)], lseA[static_cast<size_t>(r)]) << r;
            else
                EXPECT_NEAR(gotLse[static_cast<size_t>(r)], lseA[static_cast<size_t>(r)], 1e-4f) << r;
        }
    }
}

TEST(AttentionMergeGpu, MergedPartsEqualAttentionOverTheUnion) {
    const int nQ = 5, nKv = 90, nHeads = 8, nKvHeads = 2, headDim = 64, split = 37;
    const float scale = 1.0f / 8.0f;
    const auto q = gputest::randomFloats(static_cast<size_t>(nQ) * nHeads * headDim, 11, -2.0f, 2.0f);
    const auto k = gputest::randomFloats(static_cast<size_t>(nKv) * nKvHeads * headDim, 12, -2.0f, 2.0f);
    const auto v = gputest::randomFloats(k.size(), 13);
    std::vector<int32_t> kvPos(nKv), qPos(nQ);
    for (int j = 0; j < nKv; ++j) kvPos[static_cast<size_t>(j)] = j;
    for (int i = 0; i < nQ; ++i) qPos[static_cast<size_t>(i)] = 20 + 15 * i;  // the first query sees part A only
    const size_t rows = static_cast<size_t>(nQ) * nHeads;
    std::vector<float> full(q.size()), lseFull(rows), a(q.size()), lseA(rows), b(q.size()), lseB(rows);
    kernels::attentionRef(q.data(), k.data(), v.data(), full.data(), lseFull.data(), qPos.data(), kvPos.data(), nQ, nKv,
                          nHeads, nKvHeads, headDim, scale);
    const size_t off = static_cast<size_t>(split) * nKvHeads * headDim;
    kernels::attentionRef(q.data(), k.data(), v.data(), a.data(), lseA.data(), qPos.data(), kvPos.data(), nQ, split,
                          nHeads, nKvHeads, headDim, scale);
    kernels::attentionRef(q.data(), k.data() + off, v.data() + off, b.data(), lseB.data(), qPos.data(),
                          kvPos.data() + split, nQ, nKv - split, nHeads, nKvHeads, headDim, scale);
    auto dA = gputest::toDevice(a);
    auto dLseA = gputest::toDevice(lseA);
    auto dB = gputest::toDevice(b);
    auto dLseB = gputest::toDevice(lseB);
    ASSERT_TRUE(kernels::attentionMerge(nullptr, dA.data(), dLseA.data(), dB.data(), dLseB.data(),
                                        static_cast<int>(rows), headDim)
                    .ok());
    gputest::expectClose(gputest::toHost(dA), full, 2e-5f, 2e-5f, "merged attention");
    gputest::expectClose(gputest::toHost(dLseA), lseFull, 1e-4f, 1e-5f, "merged lse");
}

TEST(AttentionMergeGpu, RejectsBadShape) {
    EXPECT_FALSE(kernels::attentionMerge(nullptr, nullptr, nullptr, nullptr, nullptr, 1, 0).ok());
    EXPECT_TRUE(kernels::attentionMerge(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 64).ok());
}

}  // namespace
