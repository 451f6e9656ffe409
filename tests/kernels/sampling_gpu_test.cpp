// argmax() against a host scan: vocabulary-sized inputs, ties (lowest index wins), NaN, a single value.
#include "kernels/sampling.h"

#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>

#include "gpu_test_util.h"

namespace {

int32_t gpuArgmax(const std::vector<float>& logits) {
    auto d = gputest::toDevice(logits);
    auto out = gputest::deviceZeros<int32_t>(1);
    EXPECT_TRUE(kernels::argmax(nullptr, d.data(), static_cast<int>(logits.size()), out.data()).ok());
    return gputest::toHost(out)[0];
}

TEST(SamplingGpu, ArgmaxMatchesHost) {
    for (int n : {1, 31, 32000, 32001, 128256}) {
        const auto logits = gputest::randomFloats(n, n, -20.0f, 20.0f);
        const auto want = std::max_element(logits.begin(), logits.end()) - logits.begin();
        EXPECT_EQ(gpuArgmax(logits), want) << "n = " << n;
    }
}

TEST(SamplingGpu, TiesPickLowestIndexAndNanNeverWins) {
    std::vector<float> logits(5000, -1.0f);
    logits[4000] = 7.0f;
    logits[1234] = 7.0f;
    logits[10] = std::nanf("");
    EXPECT_EQ(gpuArgmax(logits), 1234);
}

TEST(SamplingGpu, RejectsEmpty) { EXPECT_FALSE(kernels::argmax(nullptr, nullptr, 0, nullptr).ok()); }

}  // namespace
