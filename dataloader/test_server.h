#ifndef PARAGAN_DATALOADER_TEST_SERVER_H_
#define PARAGAN_DATALOADER_TEST_SERVER_H_

// Tests only: a DataService over the synthetic dataset behind a real gRPC
// server on 127.0.0.1 (port 0: a free one), with its metrics registry.

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "dataloader/data_metrics.h"
#include "dataloader/data_service.h"
#include "dataloader/datasets/dataset.h"
#include "dataloader/dispatch_policy.h"
#include "grpcpp/grpcpp.h"
#include "prometheus/registry.h"

namespace paragan {

inline DatasetSpec SyntheticSpec(int64_t size = 256, uint64_t seed = 7) {
  DatasetSpec spec;
  spec.name = "synthetic";
  spec.synthetic_size = size;
  spec.resolution = 8;
  spec.channels = 1;
  spec.seed = seed;
  return spec;
}

struct TestServer {
  // Starts on `port` (0: any); port is 0 afterwards if binding failed.
  // `policy`: instead of options.dispatch_policy's.
  TestServer(const DataServiceOptions& options, const DatasetSpec& spec,
             int port = 0, std::unique_ptr<DispatchPolicy> policy = nullptr) {
    registry = std::make_shared<prometheus::Registry>();
    metrics = std::make_unique<DataMetrics>(registry.get());
    auto dataset = OpenDataset(spec);
    PG_CHECK(dataset.ok()) << dataset.status();
    auto created = DataService::Create(*std::move(dataset), options,
                                       metrics.get(), std::move(policy));
    PG_CHECK(created.ok()) << created.status();
    service = *std::move(created);
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", port),
                             grpc::InsecureServerCredentials(), &this->port);
    DataService::ConfigureServer(&builder, 64 << 20);
    builder.RegisterService(service.get());
    server = builder.BuildAndStart();
  }
  ~TestServer() { Stop(); }
  void Stop() {
    if (server == nullptr) return;
    server->Shutdown(std::chrono::system_clock::now());
    server->Wait();
    server.reset();
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port); }

  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<DataMetrics> metrics;
  std::unique_ptr<DataService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_TEST_SERVER_H_
