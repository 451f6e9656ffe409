// libFuzzer target for the GGUF parser: any input must parse or fail cleanly, and a file that parses must only
// describe tensor data inside the input (so later reads through tensorData() are safe).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "inference/gguf.h"

namespace {

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "gguf_fuzz: %s\n", what);
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::span<const uint8_t> input(data, size);
    auto file = inference::GgufFile::parse(input);
    if (!file.ok()) {
        check(!file.error().detail.empty(), "error without detail");
        return 0;
    }
    for (const inference::GgufTensorInfo& t : file->tensors()) {
        const std::span<const uint8_t> bytes = file->tensorData(t);
        check(bytes.size() == t.nbytes, "tensor span has the wrong size");
        check(bytes.data() >= data && bytes.data() + bytes.size() <= data + size, "tensor data outside the input");
        check(file->findTensor(t.name) == &t, "tensor lookup does not find the tensor");
    }
    for (const inference::GgufKeyValue& kv : file->metadata())
        check(file->find(kv.key) == &kv.value, "key lookup does not find the key");
    check(file->fingerprint().size() == 64, "fingerprint is not a SHA-256 hex digest");
    return 0;
}
