#ifndef PARAGAN_COMMON_JSON_TEXT_H_
#define PARAGAN_COMMON_JSON_TEXT_H_

// Writing JSON text by hand (the files the launcher writes are small and
// flat): one escaper, so every writer quotes strings the same way.

#include <string>

#include "absl/strings/string_view.h"

namespace paragan {

// `s` as a JSON string literal, quotes included; control characters as
// \uXXXX. Bytes >= 0x80 pass through (the callers' text is UTF-8).
std::string JsonString(absl::string_view s);

}  // namespace paragan

#endif  // PARAGAN_COMMON_JSON_TEXT_H_
