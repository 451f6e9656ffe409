// Replays a libFuzzer entry point without libFuzzer (gcc builds, sanitizer CI): runs LLVMFuzzerTestOneInput on
// every seed and on deterministic mutations of each seed (bit flips, truncations, inserted bytes, overwritten
// integers), each in an exactly sized heap buffer so AddressSanitizer catches any read past the end.
// usage: <target>_replay [--mutations N] SEED_FILE_OR_DIR...
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

// Formats keep their headers first: half of the mutations land in the first kHeadBytes of a seed.
constexpr size_t kHeadBytes = 16384;

// Values that often sit on boundaries of length and count fields.
constexpr uint64_t kInteresting[] = {0,
                                     1,
                                     0x7f,
                                     0x80,
                                     0xff,
                                     0xffff,
                                     0x7fffffff,
                                     0xffffffff,
                                     0x100000000ull,
                                     0x7fffffffffffffffull,
                                     0xffffffffffffffffull};

void run(const std::vector<uint8_t>& input) {
    // A fresh allocation of exactly input.size() bytes (at least 1, so data() is a real heap pointer).
    std::unique_ptr<uint8_t[]> copy(new uint8_t[std::max<size_t>(input.size(), 1)]);
    std::copy(input.begin(), input.end(), copy.get());
    LLVMFuzzerTestOneInput(copy.get(), input.size());
}

size_t pickPosition(std::mt19937_64& rng, size_t size) {
    const size_t limit = (rng() % 2 == 0) ? std::min(size, kHeadBytes) : size;
    return limit == 0 ? 0 : rng() % limit;
}

std::vector<uint8_t> mutate(const std::vector<uint8_t>& seed, std::mt19937_64& rng) {
    std::vector<uint8_t> m = seed;
    const int steps = 1 + static_cast<int>(rng() % 3);
    for (int s = 0; s < steps; ++s) {
        const size_t pos = pickPosition(rng, m.size());
        switch (rng() % 4) {
            case 0:  // flip one bit
                if (!m.empty())
                    m[pos] ^= static_cast<uint8_t>(1u << (rng() % 8));
                break;
            case 1:  // truncate
                m.resize(pos);
                break;
            case 2: {  // insert 1-16 random bytes
                std::vector<uint8_t> extra(1 + rng() % 16);
                for (uint8_t& b : extra) b = static_cast<uint8_t>(rng());
                m.insert(m.begin() + static_cast<ptrdiff_t>(std::min(pos, m.size())), extra.begin(), extra.end());
                break;
            }
            default: {  // overwrite with an interesting 1/2/4/8-byte little-endian integer
                const uint64_t value = kInteresting[rng() % std::size(kInteresting)];
                const size_t width = size_t{1} << (rng() % 4);
                for (size_t k = 0; k < width && pos + k < m.size(); ++k)
                    m[pos + k] = static_cast<uint8_t>(value >> (8 * k));
                break;
            }
        }
    }
    return m;
}

std::vector<uint8_t> readFile(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
    long mutations = 100;
    std::vector<std::filesystem::path> seeds;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--mutations") == 0 && i + 1 < argc) {
            mutations = std::strtol(argv[++i], nullptr, 10);
            continue;
        }
        const std::filesystem::path p = argv[i];
        if (std::filesystem::is_directory(p)) {
            for (const auto& entry : std::filesystem::directory_iterator(p))
                if (entry.is_regular_file())
                    seeds.push_back(entry.path());
        } else if (std::filesystem::is_regular_file(p)) {
            seeds.push_back(p);
        } else {
            std::fprintf(stderr, "fuzz replay: no such seed '%s'\n", argv[i]);
            return 2;
        }
    }
    if (seeds.empty()) {
        std::fprintf(stderr, "usage: %s [--mutations N] SEED_FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    std::sort(seeds.begin(), seeds.end());  // directory order is not deterministic
    run({});
    for (size_t k = 0; k < seeds.size(); ++k) {
        const std::vector<uint8_t> seed = readFile(seeds[k]);
        run(seed);
        std::mt19937_64 rng(0x5eed0000 + k);
        for (long m = 0; m < mutations; ++m) run(mutate(seed, rng));
    }
    std::printf("fuzz replay: %zu seeds, %ld mutations each, no crash\n", seeds.size(), mutations);
    return 0;
}
