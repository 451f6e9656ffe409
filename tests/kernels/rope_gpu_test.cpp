// rope() against ropeRef and ropeShift() (fp16 cache rows, in place and into scratch) against ropeShiftRef.
// Positions reach 100000, where only a double-precision angle agrees with the reference: float32 RoPE tolerance 1e-5
// absolute (values in [-1, 1]); the shifted fp16 keys are compared after rounding the reference to fp16, within 1
// fp16 ulp (1e-3 relative).
#include "kernels/rope.h"

#include <numeric>
#include <string>

#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/reference.h"

namespace {

std::vector<int32_t> randomPositions(int n, uint32_t seed, int maxPos) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> dist(0, maxPos);
    std::vector<int32_t> p(n);
    for (int32_t& x : p)
        x = dist(rng);
    return p;
}

struct RopeShape {
    int nTokens, nHeads, headDim, ropeDim;
};

TEST(RopeGpu, MatchesReference) {
    const RopeShape shapes[] = {{1, 32, 64, 64}, {17, 4, 64, 64}, {5, 32, 128, 128}, {3, 8, 8, 8}, {9, 6, 96, 32}};
    for (const RopeShape& s : shapes) {
        auto x = gputest::randomFloats(static_cast<size_t>(s.nTokens) * s.nHeads * s.headDim, s.nTokens);
        const auto pos = randomPositions(s.nTokens, 7, 100000);
        auto dx = gputest::toDevice(x);
        auto dpos = gputest::toDevice(pos);
        kernels::ropeRef(x.data(), pos.data(), s.nTokens, s.nHeads, s.headDim, s.ropeDim, 10000.0f);
        ASSERT_TRUE(
            kernels::rope(nullptr, dx.data(), dpos.data(), s.nTokens, s.nHeads, s.headDim, s.ropeDim, 10000.0f).ok());
        gputest::expectClose(gputest::toHost(dx), x, 1e-5f, 0.0f, "rope");
    }
}

// In place, and into a scratch copy (rows not listed stay as the scratch had them, the source is unchanged), with
// ropeDim == headDim and ropeDim < headDim (the dims past it are copied).
TEST(RopeGpu, ShiftMatchesReferenceOnCacheRows) {
    const int capacity = 64, nTokens = 20, nHeads = 4, headDim = 64;
    const auto keys = gputest::randomFloats(static_cast<size_t>(capacity) * nHeads * headDim, 11);
    const std::vector<uint16_t> cache = gputest::toHalf(keys);
    std::vector<int32_t> slots(nTokens);
    for (int t = 0; t < nTokens; ++t)
        slots[t] = (t * 7 + 3) % capacity;  // scattered, distinct
    const auto from = randomPositions(nTokens, 12, 50000);
    const auto to = randomPositions(nTokens, 13, 50000);
    const size_t rowLen = static_cast<size_t>(nHeads) * headDim;
    const std::vector<uint16_t> zeros(cache.size(), 0);
    for (int ropeDim : {headDim, 32}) {
        for (bool inPlace : {true, false}) {
            SCOPED_TRACE(std::to_string(ropeDim) + (inPlace ? " in place" : " into scratch"));
            // Reference: decode the selected rows, shift, round back to fp16; other rows keep the destination's.
            const std::vector<float> src = gputest::fromHalf(cache);
            std::vector<float> want = inPlace ? src : gputest::fromHalf(zeros);
            std::vector<float> rows(static_cast<size_t>(nTokens) * rowLen);
            for (int t = 0; t < nTokens; ++t)
                std::copy_n(src.begin() + slots[t] * rowLen, rowLen, rows.begin() + t * rowLen);
            kernels::ropeShiftRef(rows.data(), from.data(), to.data(), nTokens, nHeads, headDim, ropeDim, 10000.0f);
            for (int t = 0; t < nTokens; ++t)
                for (size_t i = 0; i < rowLen; ++i)
                    want[slots[t] * rowLen + i] = kernels::fp16ToFloat(kernels::floatToFp16(rows[t * rowLen + i]));

            auto dcache = gputest::toDevice(cache);
            auto dscratch = gputest::toDevice(zeros);
            auto dslots = gputest::toDevice(slots);
            auto dfrom = gputest::toDevice(from);
            auto dto = gputest::toDevice(to);
            uint16_t* dst = inPlace ? dcache.data() : dscratch.data();
            ASSERT_TRUE(kernels::ropeShift(nullptr, dcache.data(), dst, kernels::KvType::F16, dslots.data(),
                                           dfrom.data(), dto.data(), nTokens, nHeads, headDim, ropeDim, 10000.0f)
                            .ok());
            gputest::expectClose(gputest::fromHalf(gputest::toHost(inPlace ? dcache : dscratch)), want, 1e-4f, 1e-3f,
                                 "ropeShift");
            if (!inPlace) {
                EXPECT_EQ(gputest::toHost(dcache), cache);
            }
        }
    }
}

TEST(RopeGpu, RejectsOddDims) {
    EXPECT_FALSE(kernels::rope(nullptr, nullptr, nullptr, 1, 1, 7, 7, 10000.0f).ok());
    EXPECT_FALSE(kernels::rope(nullptr, nullptr, nullptr, 1, 1, 8, 16, 10000.0f).ok());
}

}  // namespace
