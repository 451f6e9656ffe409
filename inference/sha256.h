// SHA-256 (FIPS 180-4), streaming. Used for model fingerprints (cache keys), not for security decisions.
// Thread safety: an instance is not shared; use one per thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace inference {

class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t size);
    // Pads and returns the digest; the object must not be updated afterwards.
    std::array<uint8_t, 32> finish();
    // Lower-case hex of finish().
    std::string finishHex();

private:
    void compress(const uint8_t* block);

    std::array<uint32_t, 8> m_state;
    std::array<uint8_t, 64> m_buffer{};
    size_t m_buffered = 0;
    uint64_t m_totalBytes = 0;
};

}  // namespace inference
