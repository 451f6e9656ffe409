#include "utf8.h"

#include <cstdint>

namespace inference {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Well-formed sequences (Unicode 15, table 3-7): the lead byte fixes the length and the range of the second byte;
// later bytes are always 80..BF. This excludes overlong forms, surrogates and code points above U+10FFFF.
struct LeadInfo {
    int length = 0;  // 0: the byte cannot start a sequence
    uint8_t secondLo = 0x80;
    uint8_t secondHi = 0xBF;
};

LeadInfo leadInfo(uint8_t b) {
    if (b >= 0xC2 && b <= 0xDF)
        return {2};
    if (b == 0xE0)
        return {3, 0xA0, 0xBF};
    if (b == 0xED)
        return {3, 0x80, 0x9F};
    if (b >= 0xE1 && b <= 0xEF)
        return {3};
    if (b == 0xF0)
        return {4, 0x90, 0xBF};
    if (b == 0xF4)
        return {4, 0x80, 0x8F};
    if (b >= 0xF1 && b <= 0xF3)
        return {4};
    return {};
}

}  // namespace

size_t appendValidUtf8(std::string_view bytes, bool atEnd, std::string& out) {
    size_t i = 0;
    while (i < bytes.size()) {
        const auto lead = static_cast<uint8_t>(bytes[i]);
        if (lead < 0x80) {
            out.push_back(bytes[i]);
            ++i;
            continue;
        }
        const LeadInfo info = leadInfo(lead);
        if (info.length == 0) {
            out += kReplacement;
            ++i;
            continue;
        }
        // k counts the bytes of the sequence that are valid so far (the lead byte included).
        int k = 1;
        while (k < info.length && i + k < bytes.size()) {
            const auto b = static_cast<uint8_t>(bytes[i + k]);
            const uint8_t lo = k == 1 ? info.secondLo : 0x80;
            const uint8_t hi = k == 1 ? info.secondHi : 0xBF;
            if (b < lo || b > hi)
                break;
            ++k;
        }
        if (k == info.length) {
            out.append(bytes.substr(i, k));
        } else if (i + k == bytes.size() && !atEnd) {
            return i;  // incomplete tail: wait for more bytes
        } else {
            out += kReplacement;  // the valid prefix is one maximal subpart
        }
        i += k;
    }
    return i;
}

}  // namespace inference
