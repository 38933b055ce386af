// DataClient against an in-process service: retries with backoff while the
// service is down or restarting, gives up with UNAVAILABLE naming the
// address, and Cancel unblocks it.

#include "dataloader/data_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/wait_for.h"
#include "dataloader/test_server.h"

namespace paragan {
namespace {

DataServiceOptions Options() {
  DataServiceOptions o;
  o.batch_size = 8;
  o.seed = 1;
  o.prefetch = 2;
  return o;
}

DataClient::Options ClientOptions(const std::string& address) {
  DataClient::Options o;
  o.address = address;
  o.worker_id = "w";
  o.max_retry_seconds = 20;
  o.initial_backoff_ms = 20;
  o.max_backoff_ms = 200;
  return o;
}

// A port nobody listens on (bound, then released).
int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(DataClientTest, RejectsBadOptions) {
  DataClient::Options o = ClientOptions("127.0.0.1:1");
  o.credits = 0;
  EXPECT_EQ(DataClient::Connect(o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = ClientOptions("127.0.0.1:1");
  o.worker_id = "";
  EXPECT_EQ(DataClient::Connect(o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DataClientTest, UnreachableServiceIsUnavailableNamingTheAddress) {
  const std::string address = absl::StrCat("127.0.0.1:", UnusedPort());
  DataClient::Options o = ClientOptions(address);
  o.max_retry_seconds = 1;
  const absl::Time start = absl::Now();
  auto client = DataClient::Connect(o);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(client.status().message(), address))
      << client.status();
  EXPECT_GE(took, absl::Milliseconds(900));
  EXPECT_LT(took, absl::Seconds(10));
}

TEST(DataClientTest, ReconnectsWhenTheServiceRestartsOnTheSamePort) {
  auto first = std::make_unique<TestServer>(Options(), SyntheticSpec(128, 1));
  ASSERT_NE(first->port, 0);
  const int port = first->port;
  auto client = DataClient::Connect(ClientOptions(first->address()));
  ASSERT_TRUE(client.ok()) << client.status();
  Tensor images;
  std::vector<int> labels;
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE((*client)->Next(&images, &labels).ok());
  const std::vector<int64_t> third = (*client)->last_batch().example_indices;
  first.reset();  // the service goes away

  std::unique_ptr<TestServer> second;
  std::thread restart([&] {
    absl::SleepFor(absl::Milliseconds(800));
    second =
        std::make_unique<TestServer>(Options(), SyntheticSpec(128, 1), port);
  });
  // Batches received ahead (up to `credits`) are still served; then the
  // client waits for the new service.
  const absl::Time start = absl::Now();
  absl::Status st;
  for (int i = 0; i < 10 && st.ok() && (*client)->reconnects() == 0; ++i) {
    st = (*client)->Next(&images, &labels);
  }
  const absl::Duration waited = absl::Now() - start;
  restart.join();
  ASSERT_NE(second->port, 0) << "port " << port << " was taken meanwhile";
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_GE(waited, absl::Milliseconds(700));
  EXPECT_GE((*client)->reconnects(), 1);  // one per attempt
  // A fresh service starts its sampler over.
  EXPECT_EQ((*client)->last_batch().batch_id, 0);
  EXPECT_NE((*client)->last_batch().example_indices, third);
  ASSERT_TRUE((*client)->Next(&images, &labels).ok());
  client->reset();
  second.reset();
}

TEST(DataClientTest, GivesUpAfterMaxRetrySecondsWhenTheServiceDies) {
  auto server = std::make_unique<TestServer>(Options(), SyntheticSpec(128, 1));
  DataClient::Options o = ClientOptions(server->address());
  o.max_retry_seconds = 1;
  auto client = DataClient::Connect(o);
  ASSERT_TRUE(client.ok()) << client.status();
  Tensor images;
  std::vector<int> labels;
  ASSERT_TRUE((*client)->Next(&images, &labels).ok());
  const std::string address = server->address();
  server.reset();
  absl::Status st;
  for (int i = 0; i < 10 && st.ok(); ++i) {  // first the batches sent ahead
    st = (*client)->Next(&images, &labels);
  }
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), address)) << st;
}

TEST(DataClientTest, CancelUnblocksNextAndStopsRetries) {
  TestServer server(Options(), SyntheticSpec(128, 1));
  DataClient::Options o = ClientOptions(server.address());
  o.role = v1::D_ONLY;
  o.want_generated = true;  // nobody publishes: Next blocks
  auto client = DataClient::Connect(o);
  ASSERT_TRUE(client.ok()) << client.status();
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(300));
    (*client)->Cancel();
  });
  Tensor images;
  std::vector<int> labels;
  const absl::Time start = absl::Now();
  absl::Status st = (*client)->Next(&images, &labels);
  canceller.join();
  EXPECT_EQ(st.code(), absl::StatusCode::kCancelled) << st;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  st = (*client)->Next(&images, &labels);
  EXPECT_EQ(st.code(), absl::StatusCode::kCancelled) << st;

  // While retrying against a dead service too.
  auto other = DataClient::Connect(ClientOptions(server.address()));
  ASSERT_TRUE(other.ok());
  server.Stop();
  std::thread canceller2([&] {
    absl::SleepFor(absl::Milliseconds(300));
    (*other)->Cancel();
  });
  const absl::Time start2 = absl::Now();
  st = (*other)->Next(&images, &labels);
  canceller2.join();
  EXPECT_EQ(st.code(), absl::StatusCode::kCancelled) << st;
  EXPECT_LT(absl::Now() - start2, absl::Seconds(5));
}

TEST(DataClientTest, ClosingRequeuesBatchesReceivedAhead) {
  TestServer server(Options(), SyntheticSpec(128, 1));
  {
    auto client = DataClient::Connect(ClientOptions(server.address()));
    ASSERT_TRUE(client.ok());
    Tensor images;
    std::vector<int> labels;
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE((*client)->Next(&images, &labels).ok());
    }
  }
  WaitFor([&] { return server.service->stats().streams == 0; });
  const DataService::Stats st = server.service->stats();
  EXPECT_EQ(st.streams, 0);
  EXPECT_EQ(st.in_flight, 0);
  // Both consumed batches were acked; the ones sent ahead come back first.
  EXPECT_EQ(st.requeued, st.requeued_total);
  auto next = DataClient::Connect(ClientOptions(server.address()));
  ASSERT_TRUE(next.ok());
  Tensor images;
  std::vector<int> labels;
  ASSERT_TRUE((*next)->Next(&images, &labels).ok());
  EXPECT_EQ((*next)->last_batch().batch_id, 2);
}

}  // namespace
}  // namespace paragan
