#ifndef PARAGAN_COMMON_FLAGS_USAGE_H_
#define PARAGAN_COMMON_FLAGS_USAGE_H_

// --help of our binaries. Abseil lists only the flags of files named after
// the binary (paragan_server.cc ...); ours are defined in main.cc-style
// files, which left --help with "No flags matched".

#include <string>

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace paragan {

// Sets the program's usage message and makes --help (and --helpshort) list
// the flags defined in `flags_file` (a path suffix, e.g. "server/main.cc").
// Call once, before absl::ParseCommandLine.
inline void SetUsage(absl::string_view usage, std::string flags_file) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [flags_file](absl::string_view file) {
    return absl::EndsWith(file, flags_file);
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace paragan

#endif  // PARAGAN_COMMON_FLAGS_USAGE_H_
