// paragan_data_fetch: pulls batches from a running paragan_data through
// DataClient and prints a summary (a smoke test of a deployment, and the
// worker side of paragan_data_test.sh).
//
//   paragan_data_fetch --address=localhost:5000 --batches=10
//   # a worker whose training step takes 5 ms, for 30 s, on today's wire:
//   paragan_data_fetch --address=... --consume_ms=5 --seconds=30
//       --image_dtype=float32 --compression=none

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/security_flags.h"
#include "dataloader/data_client.h"

ABSL_FLAG(std::string, address, "", "host:port of paragan_data.");
ABSL_FLAG(std::string, worker_id, "fetch", "Worker id to stream as.");
ABSL_FLAG(int, batches, 10, "Batches to fetch.");
ABSL_FLAG(double, seconds, 0,
          "Fetch for this long instead of --batches (0: --batches).");
ABSL_FLAG(int, credits, paragan::DataClient::Options().credits,
          "Batches in flight at most (the service's policy may send fewer).");
ABSL_FLAG(double, max_retry_seconds, 10, "Give up after this long down.");
ABSL_FLAG(double, consume_ms, 0,
          "Simulated training step: sleep this long after each batch.");
ABSL_FLAG(std::string, image_dtype, "uint8",
          "What to ask the service for: uint8 (the dataset's pixels when it "
          "has them) or float32 (the wire before compact batches).");
ABSL_FLAG(double, progress_s, 0,
          "Print images/s and the stall share of every interval this long "
          "(0: only the summary): how fast a stream settles after a link "
          "changes.");
ABSL_FLAG(std::string, compression, "lz4,zstd",
          "Compressions to accept (comma separated: lz4, zstd), or none.");

namespace {

absl::Status ParseWire(paragan::DataClient::Options* o) {
  const std::string dtype = absl::GetFlag(FLAGS_image_dtype);
  if (dtype == "uint8") {
    o->image_dtype = paragan::v1::UINT8;
  } else if (dtype == "float32") {
    o->image_dtype = paragan::v1::FLOAT32;
  } else {
    return absl::InvalidArgumentError(
        "--image_dtype must be uint8 or float32, "
        "got '" +
        dtype + "'");
  }
  o->accept_compression.clear();
  const std::string list = absl::GetFlag(FLAGS_compression);
  if (list == "none") return absl::OkStatus();
  for (absl::string_view c : absl::StrSplit(list, ',')) {
    if (c == "lz4") {
      o->accept_compression.push_back(paragan::v1::LZ4);
    } else if (c == "zstd") {
      o->accept_compression.push_back(paragan::v1::ZSTD);
    } else {
      return absl::InvalidArgumentError(
          "--compression takes lz4, zstd (comma separated) or none; got '" +
          std::string(c) + "'");
    }
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Fetches batches from paragan_data.");
  absl::ParseCommandLine(argc, argv);
  paragan::DataClient::Options o;
  o.address = absl::GetFlag(FLAGS_address);
  o.worker_id = absl::GetFlag(FLAGS_worker_id);
  o.credits = absl::GetFlag(FLAGS_credits);
  o.max_retry_seconds = absl::GetFlag(FLAGS_max_retry_seconds);
  absl::StatusOr<paragan::ClientSecurity> security =
      paragan::ClientSecurityFromFlags();
  if (!security.ok()) {
    std::cerr << "paragan_data_fetch: " << security.status() << std::endl;
    return 2;
  }
  o.security = *std::move(security);
  if (absl::Status st = ParseWire(&o); !st.ok()) {
    std::cerr << "paragan_data_fetch: " << st.message() << std::endl;
    return 2;
  }
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const double consume_ms = absl::GetFlag(FLAGS_consume_ms);
  const double progress_s = absl::GetFlag(FLAGS_progress_s);
  if (seconds < 0 || consume_ms < 0 || progress_s < 0) {
    std::cerr << "paragan_data_fetch: --seconds, --consume_ms and "
                 "--progress_s must be >= 0"
              << std::endl;
    return 2;
  }
  auto client = paragan::DataClient::Connect(o);
  if (!client.ok()) {
    std::cerr << "paragan_data_fetch: " << client.status() << std::endl;
    return 1;
  }
  paragan::Tensor images;
  std::vector<int> labels;
  int64_t examples = 0;
  int64_t batches = 0;
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(seconds);
  absl::Time interval_start = start;
  int64_t interval_examples = 0;
  absl::Duration interval_stall;
  for (;;) {
    if (seconds > 0 ? absl::Now() >= end
                    : batches >= absl::GetFlag(FLAGS_batches)) {
      break;
    }
    const absl::Status st = (*client)->Next(&images, &labels);
    if (!st.ok()) {
      std::cerr << "paragan_data_fetch: " << st << std::endl;
      return 1;
    }
    examples += images.dim(0);
    ++batches;
    if (progress_s > 0) {
      const absl::Time now = absl::Now();
      interval_examples += images.dim(0);
      if (now - interval_start >= absl::Seconds(progress_s)) {
        const absl::Duration stall = (*client)->totals().stall;
        const double span = absl::ToDoubleSeconds(now - interval_start);
        std::printf(
            "paragan_data_fetch: t=%.1f s %.0f images/s stalled %.1f%%\n",
            absl::ToDoubleSeconds(now - start), interval_examples / span,
            100 * absl::ToDoubleSeconds(stall - interval_stall) / span);
        std::fflush(stdout);
        interval_start = now;
        interval_examples = 0;
        interval_stall = stall;
      }
    }
    if (consume_ms > 0) {
      std::this_thread::sleep_for(
          std::chrono::microseconds(static_cast<int64_t>(consume_ms * 1000)));
    }
  }
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  const paragan::DataClient::Totals t = (*client)->totals();
  std::cout << "paragan_data_fetch: " << batches << " batches, " << examples
            << " images " << paragan::ShapeToString(images.shape())
            << ", last batch " << (*client)->last_batch().batch_id << " epoch "
            << (*client)->last_batch().epoch << std::endl;
  char line[512];
  std::snprintf(
      line, sizeof(line),
      "paragan_data_fetch: %.1f s, %.0f images/s, stalled %.1f%% of the "
      "time, %.2f MB on the wire for %.2f MB decoded (x%.2f), decode %.3f s",
      elapsed, elapsed > 0 ? examples / elapsed : 0.0,
      elapsed > 0 ? 100 * absl::ToDoubleSeconds(t.stall) / elapsed : 0.0,
      t.wire_bytes / 1e6, t.decoded_bytes / 1e6,
      t.wire_bytes > 0 ? static_cast<double>(t.decoded_bytes) / t.wire_bytes
                       : 0.0,
      absl::ToDoubleSeconds(t.decode));
  std::cout << line << std::endl;
  return 0;
}
