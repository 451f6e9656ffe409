// swiglu() against swigluRef and addInPlace() against a host sum. SwiGLU uses the fast exp: 1e-5 relative plus 1e-6
// absolute; the add is exact.
#include "kernels/swiglu.h"

#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/reference.h"

namespace {

TEST(SwigluGpu, MatchesReference) {
    for (int64_t n : {int64_t{1}, int64_t{5632}, int64_t{11008} * 3 + 1, int64_t{1} << 22}) {
        const auto gate = gputest::randomFloats(n, 3, -8.0f, 8.0f);
        const auto up = gputest::randomFloats(n, 4, -2.0f, 2.0f);
        std::vector<float> want(n);
        kernels::swigluRef(want.data(), gate.data(), up.data(), n);
        auto dg = gputest::toDevice(gate);
        auto du = gputest::toDevice(up);
        auto dout = gputest::deviceZeros<float>(n);
        ASSERT_TRUE(kernels::swiglu(nullptr, dout.data(), dg.data(), du.data(), n).ok());
        gputest::expectClose(gputest::toHost(dout), want, 1e-6f, 1e-5f, "swiglu");
        ASSERT_TRUE(kernels::swiglu(nullptr, dg.data(), dg.data(), du.data(), n).ok());  // out aliases gate
        gputest::expectClose(gputest::toHost(dg), want, 1e-6f, 1e-5f, "swiglu in place");
    }
}

TEST(SwigluGpu, AddInPlace) {
    const int64_t n = 2048 * 5 + 3;
    const auto x = gputest::randomFloats(n, 5);
    const auto y = gputest::randomFloats(n, 6);
    std::vector<float> want(n);
    for (int64_t i = 0; i < n; ++i)
        want[i] = x[i] + y[i];
    auto dx = gputest::toDevice(x);
    auto dy = gputest::toDevice(y);
    ASSERT_TRUE(kernels::addInPlace(nullptr, dx.data(), dy.data(), n).ok());
    gputest::expectClose(gputest::toHost(dx), want, 0.0f, 0.0f, "addInPlace");
}

}  // namespace
