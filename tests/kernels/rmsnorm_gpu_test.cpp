// rmsnorm() against rmsnormRef over several shapes (TinyLlama 2048, 7B 4096, odd sizes). Tolerance 1e-5 relative
// plus 1e-5 absolute: both sides accumulate in float, only in a different order.
#include "kernels/rmsnorm.h"

#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/reference.h"

namespace {

TEST(RmsnormGpu, MatchesReference) {
    const int shapes[][2] = {{1, 2048}, {7, 2048}, {3, 4096}, {5, 65}, {2, 5632}, {1, 8}, {300, 64}};
    for (const auto& s : shapes) {
        const int rows = s[0], dim = s[1];
        const auto x = gputest::randomFloats(static_cast<size_t>(rows) * dim, 1 + rows, -3.0f, 3.0f);
        const auto w = gputest::randomFloats(dim, 2 + dim);
        std::vector<float> want(x.size());
        kernels::rmsnormRef(want.data(), x.data(), w.data(), rows, dim, 1e-5f);
        auto dx = gputest::toDevice(x);
        auto dw = gputest::toDevice(w);
        auto dout = gputest::deviceZeros<float>(x.size());
        ASSERT_TRUE(kernels::rmsnorm(nullptr, dout.data(), dx.data(), dw.data(), rows, dim, 1e-5f).ok());
        gputest::expectClose(gputest::toHost(dout), want, 1e-5f, 1e-5f, "rmsnorm");
        // In place.
        ASSERT_TRUE(kernels::rmsnorm(nullptr, dx.data(), dx.data(), dw.data(), rows, dim, 1e-5f).ok());
        gputest::expectClose(gputest::toHost(dx), want, 1e-5f, 1e-5f, "rmsnorm in place");
    }
}

TEST(RmsnormGpu, RejectsBadShape) {
    EXPECT_FALSE(kernels::rmsnorm(nullptr, nullptr, nullptr, nullptr, 1, 0, 1e-5f).ok());
}

}  // namespace
