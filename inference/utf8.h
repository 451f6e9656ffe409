// UTF-8 repair shared by Tokenizer::decode and Utf8StreamDecoder (private to the inference library).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace inference {

// Appends `bytes` to `out` as valid UTF-8: every maximal invalid subpart (Unicode 15, section 3.9, "U+FFFD
// substitution of maximal subparts") becomes one U+FFFD. When `atEnd` is false, a sequence that is incomplete but
// valid so far at the end of `bytes` is not consumed, because more bytes may complete it. Returns the number of
// bytes consumed; the same input gives the same output whether it arrives in one call or in pieces.
size_t appendValidUtf8(std::string_view bytes, bool atEnd, std::string& out);

}  // namespace inference
