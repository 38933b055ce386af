#ifndef PARAGAN_COMMON_CHECK_H_
#define PARAGAN_COMMON_CHECK_H_

// Invariant checks for programming errors (not for bad user input, which gets
// an absl::Status). Debian's Abseil (2022-06) predates absl/log, hence our own.

#include <cstdlib>
#include <iostream>
#include <sstream>

#include "absl/status/status.h"

namespace paragan::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* cond) {
    stream_ << file << ":" << line << ": check failed: " << cond << " ";
  }
  [[noreturn]] ~CheckFailure() {
    std::cerr << stream_.str() << std::endl;
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace paragan::internal

#define PG_CHECK(cond) \
  if (cond) {          \
  } else               \
    ::paragan::internal::CheckFailure(__FILE__, __LINE__, #cond).stream()

#define PG_CHECK_EQ(a, b) \
  PG_CHECK((a) == (b)) << "(" << (a) << " vs " << (b) << ") "
#define PG_CHECK_OK(expr)                       \
  do {                                          \
    const ::absl::Status _pg_st = (expr);       \
    PG_CHECK(_pg_st.ok()) << _pg_st.ToString(); \
  } while (0)

// Propagates a non-OK status; assigns the value of a StatusOr otherwise.
#define PG_RETURN_IF_ERROR(expr)     \
  do {                               \
    ::absl::Status _pg_st = (expr);  \
    if (!_pg_st.ok()) return _pg_st; \
  } while (0)

#define PG_CONCAT_INNER(a, b) a##b
#define PG_CONCAT(a, b) PG_CONCAT_INNER(a, b)
#define PG_ASSIGN_OR_RETURN(lhs, expr) \
  PG_ASSIGN_OR_RETURN_IMPL(PG_CONCAT(_pg_sor_, __LINE__), lhs, expr)
#define PG_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()

#endif  // PARAGAN_COMMON_CHECK_H_
