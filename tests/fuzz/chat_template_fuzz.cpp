// libFuzzer target for the chat-template parser and interpreter: any text must parse or fail with a located
// TemplateError, and a template that parses must render a small conversation or fail cleanly, within the limits
// (no crash, hang, unbounded recursion or memory growth).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "inference/chat_template.h"

namespace {

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "chat_template_fuzz: %s\n", what);
        std::abort();
    }
}

void checkFailure(const inference::Error& e) {
    check(!e.detail.empty(), "error without detail");
    check(e.code == inference::ErrorCode::TemplateError || e.code == inference::ErrorCode::OutOfMemory,
          "unexpected error code");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view source(reinterpret_cast<const char*>(data), size);
    auto tmpl = inference::ChatTemplate::parse(source, "fuzz");
    if (!tmpl.ok()) {
        checkFailure(tmpl.error());
        return 0;
    }
    inference::ChatRenderInput input;
    input.messages = {{"system", "Be brief."}, {"user", "Hi \"there\"\n"}, {"assistant", "Hello! ü"}, {"user", "2+2?"}};
    input.bosToken = "<s>";
    input.eosToken = "</s>";
    input.variables = {{"tools", inference::Value::list({inference::Value::map({{"name", "f"}, {"n", 1.5}})})}};
    input.now = inference::LocalDateTime{2024, 7, 26, 12, 0, 0};
    // Small limits keep each input fast; the limits themselves are what is under test.
    input.limits.maxSteps = 200'000;
    input.limits.maxOutputBytes = 64 * 1024;
    auto out = tmpl->render(input);
    if (!out.ok())
        checkFailure(out.error());
    else
        check(out->size() <= input.limits.maxOutputBytes, "output above the limit");
    auto eot = inference::endOfTurnStrings(*tmpl, input);
    if (!eot.ok())
        checkFailure(eot.error());
    return 0;
}
