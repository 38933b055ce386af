// paragan_data_fetch: pulls batches from a running paragan_data through
// DataClient and prints a summary (a smoke test of a deployment, and the
// worker side of paragan_data_test.sh).
//
//   paragan_data_fetch --address=localhost:5000 --batches=10

#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "dataloader/data_client.h"

ABSL_FLAG(std::string, address, "", "host:port of paragan_data.");
ABSL_FLAG(std::string, worker_id, "fetch", "Worker id to stream as.");
ABSL_FLAG(int, batches, 10, "Batches to fetch.");
ABSL_FLAG(int, credits, 4, "Batches in flight.");
ABSL_FLAG(double, max_retry_seconds, 10, "Give up after this long down.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Fetches batches from paragan_data.");
  absl::ParseCommandLine(argc, argv);
  paragan::DataClient::Options o;
  o.address = absl::GetFlag(FLAGS_address);
  o.worker_id = absl::GetFlag(FLAGS_worker_id);
  o.credits = absl::GetFlag(FLAGS_credits);
  o.max_retry_seconds = absl::GetFlag(FLAGS_max_retry_seconds);
  auto client = paragan::DataClient::Connect(o);
  if (!client.ok()) {
    std::cerr << "paragan_data_fetch: " << client.status() << std::endl;
    return 1;
  }
  paragan::Tensor images;
  std::vector<int> labels;
  int64_t examples = 0;
  for (int i = 0; i < absl::GetFlag(FLAGS_batches); ++i) {
    const absl::Status st = (*client)->Next(&images, &labels);
    if (!st.ok()) {
      std::cerr << "paragan_data_fetch: " << st << std::endl;
      return 1;
    }
    examples += images.dim(0);
  }
  std::cout << "paragan_data_fetch: " << absl::GetFlag(FLAGS_batches)
            << " batches, " << examples << " images "
            << paragan::ShapeToString(images.shape()) << ", last batch "
            << (*client)->last_batch().batch_id << " epoch "
            << (*client)->last_batch().epoch << std::endl;
  return 0;
}
