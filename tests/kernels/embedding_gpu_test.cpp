// embedding() against embeddingRef for every supported weight type. Both decode the same bytes with float
// arithmetic; an fma contraction may differ by a rounding step, so 1e-6 absolute plus 1e-5 relative.
#include "kernels/embedding.h"

#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/reference.h"

namespace {

using kernels::GgmlType;

TEST(EmbeddingGpu, MatchesReferenceForEveryType) {
    const GgmlType types[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0,
                              GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K};
    const int vocab = 300;
    for (GgmlType type : types) {
        for (int cols : {256, 2048, 768}) {
            const auto table = gputest::randomMatrix(type, vocab, cols, 21);
            const std::vector<int32_t> tokens = {0, 299, 17, 17, 150, 1, 298};
            const int n = static_cast<int>(tokens.size());
            std::vector<float> want(static_cast<size_t>(n) * cols);
            kernels::embeddingRef(type, table.data(), cols, tokens.data(), n, want.data());
            auto dtable = gputest::toDevice(table);
            auto dtokens = gputest::toDevice(tokens);
            auto dout = gputest::deviceZeros<float>(want.size());
            ASSERT_TRUE(kernels::embedding(nullptr, type, dtable.data(), cols, dtokens.data(), n, dout.data()).ok());
            SCOPED_TRACE(std::string(kernels::typeName(type)) + " cols " + std::to_string(cols));
            gputest::expectClose(gputest::toHost(dout), want, 1e-6f, 1e-5f, "embedding");
        }
    }
}

TEST(EmbeddingGpu, RejectsPartialBlocks) {
    const auto st = kernels::embedding(nullptr, GgmlType::Q4_K, nullptr, 100, nullptr, 1, nullptr);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, roundchat::ErrorCode::InvalidArgument);
}

}  // namespace
