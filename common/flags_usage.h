#ifndef PARAGAN_COMMON_FLAGS_USAGE_H_
#define PARAGAN_COMMON_FLAGS_USAGE_H_

// --help of our binaries. Abseil lists only the flags of files named after
// the binary (paragan_server.cc ...); ours are defined in main.cc-style
// files, which left --help with "No flags matched".

#include <iostream>
#include <string>

#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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

// A flag renamed from `old_name` to `name`, the old name kept as a
// deprecated alias: the value given under either name (the old one with a
// warning on stderr); both given with different values is an error.
inline absl::StatusOr<std::string> RenamedFlagValue(
    absl::string_view name, const std::string& value,
    absl::string_view old_name, const std::string& old_value) {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  const absl::CommandLineFlag* old_flag = absl::FindCommandLineFlag(old_name);
  // "Given" = changed from its default (this Abseil keeps
  // IsSpecifiedOnCommandLine private); giving the default is the same thing.
  const bool given =
      flag != nullptr && flag->CurrentValue() != flag->DefaultValue();
  const bool old_given = old_flag != nullptr &&
                         old_flag->CurrentValue() != old_flag->DefaultValue();
  if (!old_given) return value;
  if (given && value != old_value) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", name, "=", value, " and its deprecated alias --", old_name, "=",
        old_value, " disagree: give --", name, " only"));
  }
  if (!given) {
    std::cerr << "warning: --" << old_name << " is deprecated, use --" << name
              << std::endl;
  }
  return old_value;
}

}  // namespace paragan

#endif  // PARAGAN_COMMON_FLAGS_USAGE_H_
