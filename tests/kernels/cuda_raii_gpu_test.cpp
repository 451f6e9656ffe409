// The device probe and the RAII wrappers on a real GPU: allocation, copies, OOM as a value, moves, events.
#include "kernels/cuda_raii.h"

#include <vector>

#include <gtest/gtest.h>

#include "gpu_test_util.h"

namespace {

using kernels::DeviceBuffer;

TEST(CudaRaii, ProbeFindsUsableDevice) {
    const auto info = kernels::probeCudaDevice(0);
    ASSERT_TRUE(info.ok()) << info.error().toString();
    EXPECT_FALSE(info->name.empty());
    EXPECT_GE(info->computeMajor * 10 + info->computeMinor, 75);
    EXPECT_GT(info->totalBytes, 0u);
    EXPECT_LE(info->freeBytes, info->totalBytes);
    EXPECT_GE(info->driverVersion, kernels::kMinDriverVersion);
}

TEST(CudaRaii, ProbeOfMissingDeviceIsNoGpu) {
    const auto info = kernels::probeCudaDevice(1000);
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.error().code, roundchat::ErrorCode::NoGpu);
}

TEST(CudaRaii, RoundTripAndMove) {
    const std::vector<int> host = {1, 2, 3, 4, 5};
    DeviceBuffer<int> a = gputest::toDevice(host);
    DeviceBuffer<int> b = std::move(a);
    EXPECT_EQ(a.data(), nullptr);
    EXPECT_EQ(a.size(), 0u);
    ASSERT_EQ(b.size(), host.size());
    EXPECT_EQ(gputest::toHost(b), host);
    std::vector<int> big(6);
    EXPECT_FALSE(b.upload(big.data(), big.size(), nullptr).ok());
}

TEST(CudaRaii, OutOfMemoryIsAnError) {
    const auto info = kernels::probeCudaDevice(0);
    ASSERT_TRUE(info.ok());
    auto huge = DeviceBuffer<char>::create(info->totalBytes * 4);
    ASSERT_FALSE(huge.ok());
    EXPECT_EQ(huge.error().code, roundchat::ErrorCode::OutOfGpuMemory);
    EXPECT_NE(huge.error().detail.find("free"), std::string::npos) << huge.error().detail;
    // The failure must not poison later work.
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    auto small = DeviceBuffer<char>::create(1024);
    EXPECT_TRUE(small.ok());
}

TEST(CudaRaii, StreamEventPinned) {
    auto stream = kernels::Stream::create();
    ASSERT_TRUE(stream.ok());
    auto start = kernels::Event::create(true);
    auto end = kernels::Event::create(true);
    ASSERT_TRUE(start.ok() && end.ok());
    auto pinned = kernels::PinnedBuffer<float>::create(1 << 20);
    ASSERT_TRUE(pinned.ok());
    for (size_t i = 0; i < pinned->size(); ++i)
        (*pinned)[i] = static_cast<float>(i);
    auto dev = DeviceBuffer<float>::create(pinned->size());
    ASSERT_TRUE(dev.ok());
    ASSERT_TRUE(start->record(stream->get()).ok());
    ASSERT_TRUE(dev->upload(pinned->data(), pinned->size(), stream->get()).ok());
    ASSERT_TRUE(end->record(stream->get()).ok());
    ASSERT_TRUE(stream->synchronize().ok());
    const auto ms = kernels::Event::elapsedMs(*start, *end);
    ASSERT_TRUE(ms.ok());
    EXPECT_GE(*ms, 0.0f);
    const std::vector<float> back = gputest::toHost(*dev);
    EXPECT_EQ(back[12345], 12345.0f);
    auto cublas = kernels::CublasHandle::create();
    EXPECT_TRUE(cublas.ok());
}

}  // namespace
