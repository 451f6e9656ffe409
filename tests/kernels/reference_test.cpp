// Hand-computed cases and identities for the CPU reference kernels (rmsnorm, rope, swiglu, softmax, attention).
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/reference.h"

namespace {

std::vector<float> randomVector(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

TEST(RmsnormRef, HandComputed) {
    // rms of (3, 4) = sqrt(12.5); eps 0.
    const std::vector<float> x = {3.0f, 4.0f, 1.0f, -1.0f};
    const std::vector<float> w = {1.0f, 2.0f};
    std::vector<float> out(4);
    kernels::rmsnormRef(out.data(), x.data(), w.data(), 2, 2, 0.0f);
    const float inv = 1.0f / std::sqrt(12.5f);
    EXPECT_NEAR(out[0], 3.0f * inv, 1e-6);
    EXPECT_NEAR(out[1], 8.0f * inv, 1e-6);
    EXPECT_NEAR(out[2], 1.0f, 1e-6);
    EXPECT_NEAR(out[3], -2.0f, 1e-6);
}

TEST(RmsnormRef, InPlaceMatchesOutOfPlace) {
    std::vector<float> x = randomVector(3 * 16, 1);
    const std::vector<float> w = randomVector(16, 2);
    std::vector<float> out(x.size());
    kernels::rmsnormRef(out.data(), x.data(), w.data(), 3, 16, 1e-5f);
    kernels::rmsnormRef(x.data(), x.data(), w.data(), 3, 16, 1e-5f);
    EXPECT_EQ(x, out);
}

TEST(RopeRef, HandComputed) {
    // One head, headDim 4, ropeDim 4, base 100: pair 0 rotates by pos, pair 1 by pos / 10.
    std::vector<float> x = {1.0f, 0.0f, 0.0f, 1.0f};
    const int32_t pos = 2;
    kernels::ropeRef(x.data(), &pos, 1, 1, 4, 4, 100.0f);
    EXPECT_NEAR(x[0], std::cos(2.0f), 1e-6);
    EXPECT_NEAR(x[1], std::sin(2.0f), 1e-6);
    EXPECT_NEAR(x[2], -std::sin(0.2f), 1e-6);
    EXPECT_NEAR(x[3], std::cos(0.2f), 1e-6);
}

TEST(RopeRef, PositionZeroAndPartialRopeDimAreIdentity) {
    const std::vector<float> orig = randomVector(2 * 3 * 8, 3);
    std::vector<float> x = orig;
    const int32_t zeros[2] = {0, 0};
    kernels::ropeRef(x.data(), zeros, 2, 3, 8, 8, 10000.0f);
    EXPECT_EQ(x, orig);
    // ropeDim 4 of headDim 8: dims 4..7 of every head are untouched.
    const int32_t pos[2] = {5, 9};
    kernels::ropeRef(x.data(), pos, 2, 3, 8, 4, 10000.0f);
    for (int t = 0; t < 2; ++t)
        for (int h = 0; h < 3; ++h)
            for (int d = 0; d < 8; ++d) {
                const size_t i = (static_cast<size_t>(t) * 3 + h) * 8 + d;
                if (d >= 4)
                    EXPECT_EQ(x[i], orig[i]);
                else
                    EXPECT_NE(x[i], orig[i]);
            }
}

TEST(RopeRef, ShiftEqualsRopeAtNewPosition) {
    const std::vector<float> orig = randomVector(3 * 2 * 16, 4);
    const int32_t from[3] = {7, 100, 3000};
    const int32_t to[3] = {2, 150, 12};
    std::vector<float> shifted = orig;
    kernels::ropeRef(shifted.data(), from, 3, 2, 16, 16, 10000.0f);
    kernels::ropeShiftRef(shifted.data(), from, to, 3, 2, 16, 16, 10000.0f);
    std::vector<float> direct = orig;
    kernels::ropeRef(direct.data(), to, 3, 2, 16, 16, 10000.0f);
    for (size_t i = 0; i < orig.size(); ++i) EXPECT_NEAR(shifted[i], direct[i], 1e-5) << i;
}

TEST(SwigluRef, HandComputed) {
    const std::vector<float> gate = {0.0f, 1.0f, -2.0f};
    const std::vector<float> up = {5.0f, 2.0f, 3.0f};
    std::vector<float> out(3);
    kernels::swigluRef(out.data(), gate.data(), up.data(), 3);
    EXPECT_NEAR(out[0], 0.0f, 1e-7);
    EXPECT_NEAR(out[1], 2.0f / (1.0f + std::exp(-1.0f)), 1e-6);
    EXPECT_NEAR(out[2], 3.0f * -2.0f / (1.0f + std::exp(2.0f)), 1e-6);
}

TEST(SoftmaxRef, HandComputedAndStableForLargeInputs) {
    std::vector<float> x = {0.0f, std::log(3.0f)};
    kernels::softmaxRef(x.data(), 2);
    EXPECT_NEAR(x[0], 0.25f, 1e-6);
    EXPECT_NEAR(x[1], 0.75f, 1e-6);
    std::vector<float> big = {1000.0f, 1000.0f, -1000.0f};
    kernels::softmaxRef(big.data(), 3);
    EXPECT_NEAR(big[0], 0.5f, 1e-6);
    EXPECT_NEAR(big[1], 0.5f, 1e-6);
    EXPECT_EQ(big[2], 0.0f);
}

TEST(AttentionRef, HandComputedSingleHead) {
    // q = (1, 0); keys (1, 0) and (0, 1) with scale 1: weights softmax(1, 0); values (1, 0) and (0, 2).
    const std::vector<float> q = {1.0f, 0.0f};
    const std::vector<float> k = {1.0f, 0.0f, 0.0f, 1.0f};
    const std::vector<float> v = {1.0f, 0.0f, 0.0f, 2.0f};
    const int32_t qPos = 1;
    const int32_t kvPos[2] = {0, 1};
    std::vector<float> out(2);
    float lse = 0.0f;
    kernels::attentionRef(q.data(), k.data(), v.data(), out.data(), &lse, &qPos, kvPos, 1, 2, 1, 1, 2, 1.0f);
    const float e = std::exp(1.0f);
    EXPECT_NEAR(out[0], e / (e + 1.0f), 1e-6);
    EXPECT_NEAR(out[1], 2.0f / (e + 1.0f), 1e-6);
    EXPECT_NEAR(lse, std::log(e + 1.0f), 1e-6);
}

TEST(AttentionRef, MaskingByPosition) {
    // The query at position 0 sees only key 0 (positions 0 and 5): out = v0 exactly.
    const std::vector<float> q = randomVector(2, 5);
    const std::vector<float> k = randomVector(4, 6);
    const std::vector<float> v = {0.5f, -0.25f, 9.0f, 9.0f};
    const int32_t qPos = 0;
    const int32_t kvPos[2] = {0, 5};
    std::vector<float> out(2);
    float lse = 0.0f;
    kernels::attentionRef(q.data(), k.data(), v.data(), out.data(), &lse, &qPos, kvPos, 1, 2, 1, 1, 2, 0.7f);
    EXPECT_FLOAT_EQ(out[0], 0.5f);
    EXPECT_FLOAT_EQ(out[1], -0.25f);
    const float s0 = (q[0] * k[0] + q[1] * k[1]) * 0.7f;
    EXPECT_NEAR(lse, s0, 1e-6);
    // No visible key: zero output and lse = -inf.
    const int32_t late[2] = {3, 4};
    kernels::attentionRef(q.data(), k.data(), v.data(), out.data(), &lse, &qPos, late, 1, 2, 1, 1, 2, 0.7f);
    EXPECT_EQ(out[0], 0.0f);
    EXPECT_EQ(lse, -std::numeric_limits<float>::infinity());
}

TEST(AttentionRef, GqaMapsQueryHeadsToKvHeads) {
    // 4 query heads over 2 kv heads: heads 0, 1 read kv head 0 and heads 2, 3 read kv head 1. With one key, the
    // output is that key's value for the mapped kv head.
    const int headDim = 3;
    const std::vector<float> q = randomVector(4 * headDim, 7);
    const std::vector<float> k = randomVector(2 * headDim, 8);
    const std::vector<float> v = {1.0f, 2.0f, 3.0f, -4.0f, -5.0f, -6.0f};
    const int32_t pos = 0;
    std::vector<float> out(4 * headDim);
    kernels::attentionRef(q.data(), k.data(), v.data(), out.data(), nullptr, &pos, &pos, 1, 1, 4, 2, headDim, 1.0f);
    for (int h = 0; h < 4; ++h)
        for (int d = 0; d < headDim; ++d)
            EXPECT_FLOAT_EQ(out[h * headDim + d], v[(h / 2) * headDim + d]) << h << "," << d;
}

TEST(AttentionRef, MergeOfTwoHalvesEqualsWhole) {
    const int nQ = 3, nKv = 10, nHeads = 4, nKvHeads = 2, headDim = 8;
    const float scale = 1.0f / std::sqrt(static_cast<float>(headDim));
    const std::vector<float> q = randomVector(static_cast<size_t>(nQ) * nHeads * headDim, 9);
    const std::vector<float> k = randomVector(static_cast<size_t>(nKv) * nKvHeads * headDim, 10);
    const std::vector<float> v = randomVector(static_cast<size_t>(nKv) * nKvHeads * headDim, 11);
    std::vector<int32_t> kvPos(nKv);
    for (int j = 0; j < nKv; ++j) kvPos[j] = j;
    const int32_t qPos[3] = {2, 6, 9};  // the first query sees only part of the first half; masking mixes in
    const size_t outSize = static_cast<size_t>(nQ) * nHeads * headDim;
    std::vector<float> whole(outSize), wholeLse(nQ * nHeads);
    kernels::attentionRef(q.data(), k.data(), v.data(), whole.data(), wholeLse.data(), qPos, kvPos.data(), nQ, nKv,
                          nHeads, nKvHeads, headDim, scale);
    const int split = 4;
    const size_t kvRow = static_cast<size_t>(nKvHeads) * headDim;
    std::vector<float> a(outSize), aLse(nQ * nHeads), b(outSize), bLse(nQ * nHeads);
    kernels::attentionRef(q.data(), k.data(), v.data(), a.data(), aLse.data(), qPos, kvPos.data(), nQ, split, nHeads,
                          nKvHeads, headDim, scale);
    kernels::attentionRef(q.data(), k.data() + split * kvRow, v.data() + split * kvRow, b.data(), bLse.data(), qPos,
                          kvPos.data() + split, nQ, nKv - split, nHeads, nKvHeads, headDim, scale);
    EXPECT_EQ(bLse[0], -std::numeric_limits<float>::infinity());  // query at position 2 sees nothing of the tail
    kernels::attentionMergeRef(a.data(), aLse.data(), b.data(), bLse.data(), nQ * nHeads, headDim);
    for (size_t i = 0; i < outSize; ++i) EXPECT_NEAR(a[i], whole[i], 1e-5) << i;
    for (int i = 0; i < nQ * nHeads; ++i) EXPECT_NEAR(aLse[i], wholeLse[i], 1e-5) << i;
    // Merging in the other order (empty side first) gives the same result.
    kernels::attentionRef(q.data(), k.data(), v.data(), a.data(), aLse.data(), qPos, kvPos.data(), nQ, split, nHeads,
                          nKvHeads, headDim, scale);
    kernels::attentionMergeRef(b.data(), bLse.data(), a.data(), aLse.data(), nQ * nHeads, headDim);
    for (size_t i = 0; i < outSize; ++i) EXPECT_NEAR(b[i], whole[i], 1e-5) << i;
}

}  // namespace
