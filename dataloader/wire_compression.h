#ifndef PARAGAN_DATALOADER_WIRE_COMPRESSION_H_
#define PARAGAN_DATALOADER_WIRE_COMPRESSION_H_

// Compression of batch payloads on the data wire, through Debian's libzstd
// and liblz4. A WireEncoding names a codec and its level; the dispatch policy
// picks one per link and batch (dispatch_policy.h, Encoding).

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/paragan.pb.h"

namespace paragan {

struct WireEncoding {
  v1::Compression codec = v1::NO_COMPRESSION;
  // ZSTD: 1..19 (negative levels are zstd's fast modes); LZ4: its
  // acceleration (1 = default; higher is faster and compresses less).
  int level = 0;

  bool operator==(const WireEncoding& o) const {
    return codec == o.codec &&
           (codec == v1::NO_COMPRESSION || level == o.level);
  }
  bool operator!=(const WireEncoding& o) const { return !(*this == o); }
};

// "none", "lz4:1", "zstd:3".
std::string WireEncodingName(const WireEncoding& encoding);

// `raw` compressed with `encoding` (NO_COMPRESSION: a copy). An unknown codec
// is InvalidArgument.
absl::StatusOr<std::string> Compress(const WireEncoding& encoding,
                                     absl::string_view raw);

// Decompresses `data` (compressed with `codec`) into exactly `raw_bytes`
// bytes. Corrupt data, another size or an unknown codec: DataLoss /
// InvalidArgument naming `what`.
absl::StatusOr<std::string> Decompress(v1::Compression codec,
                                       absl::string_view data,
                                       int64_t raw_bytes,
                                       const std::string& what);

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_WIRE_COMPRESSION_H_
