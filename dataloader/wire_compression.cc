#include "dataloader/wire_compression.h"

#include <lz4.h>
#include <zstd.h>

#include <limits>

#include "absl/strings/str_cat.h"

namespace paragan {

std::string WireEncodingName(const WireEncoding& e) {
  switch (e.codec) {
    case v1::NO_COMPRESSION:
      return "none";
    case v1::LZ4:
      return absl::StrCat("lz4:", e.level);
    case v1::ZSTD:
      return absl::StrCat("zstd:", e.level);
    default:
      return absl::StrCat("codec", static_cast<int>(e.codec));
  }
}

absl::StatusOr<std::string> Compress(const WireEncoding& e,
                                     absl::string_view raw) {
  switch (e.codec) {
    case v1::NO_COMPRESSION:
      return std::string(raw);
    case v1::LZ4: {
      if (raw.size() > static_cast<size_t>(LZ4_MAX_INPUT_SIZE)) {
        return absl::InvalidArgumentError(
            absl::StrCat("lz4: ", raw.size(), " bytes exceed its limit"));
      }
      std::string out(LZ4_compressBound(static_cast<int>(raw.size())), '\0');
      const int n = LZ4_compress_fast(
          raw.data(), out.data(), static_cast<int>(raw.size()),
          static_cast<int>(out.size()), e.level < 1 ? 1 : e.level);
      if (n <= 0) return absl::InternalError("lz4 compression failed");
      out.resize(static_cast<size_t>(n));
      return out;
    }
    case v1::ZSTD: {
      std::string out(ZSTD_compressBound(raw.size()), '\0');
      const size_t n = ZSTD_compress(out.data(), out.size(), raw.data(),
                                     raw.size(), e.level);
      if (ZSTD_isError(n)) {
        return absl::InternalError(
            absl::StrCat("zstd compression failed: ", ZSTD_getErrorName(n)));
      }
      out.resize(n);
      return out;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown compression ", static_cast<int>(e.codec)));
  }
}

absl::StatusOr<std::string> Decompress(v1::Compression codec,
                                       absl::string_view data,
                                       int64_t raw_bytes,
                                       const std::string& what) {
  if (raw_bytes < 0 || raw_bytes > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": ", raw_bytes, " bytes is no size to decompress to"));
  }
  if (codec == v1::NO_COMPRESSION) return std::string(data);
  std::string out(static_cast<size_t>(raw_bytes), '\0');
  switch (codec) {
    case v1::LZ4: {
      const int n = LZ4_decompress_safe(data.data(), out.data(),
                                        static_cast<int>(data.size()),
                                        static_cast<int>(out.size()));
      if (n != raw_bytes) {
        return absl::DataLossError(absl::StrCat(
            what, ": lz4 data is corrupt or not ", raw_bytes, " bytes"));
      }
      return out;
    }
    case v1::ZSTD: {
      const size_t n =
          ZSTD_decompress(out.data(), out.size(), data.data(), data.size());
      if (ZSTD_isError(n) || n != static_cast<size_t>(raw_bytes)) {
        return absl::DataLossError(absl::StrCat(
            what, ": zstd data is corrupt or not ", raw_bytes, " bytes",
            ZSTD_isError(n) ? absl::StrCat(" (", ZSTD_getErrorName(n), ")")
                            : ""));
      }
      return out;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": unknown compression ", static_cast<int>(codec)));
  }
}

}  // namespace paragan
