#include "dataloader/congestion_aware_policy.h"

#include "gtest/gtest.h"

namespace paragan {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000000);

StreamInfo Stream(StreamId id, bool compresses = true) {
  StreamInfo s;
  s.id = id;
  s.worker_id = "w" + std::to_string(id);
  s.decodes_uint8 = true;
  if (compresses) s.compressions = {v1::LZ4, v1::ZSTD};
  return s;
}

// A link of `bytes_per_s` with base round trip `base`, carrying batches of
// `raw` bytes that rung r compresses to raw * ratio[r] in encode[r].
struct FakeLink {
  double bytes_per_s;
  absl::Duration base;
  int64_t raw = 50000;
  double ratio[LinkEstimator::kRungs] = {1.0, 0.5, 0.4, 0.35, 0.3};
  absl::Duration encode[LinkEstimator::kRungs] = {
      absl::ZeroDuration(), absl::Microseconds(100), absl::Microseconds(300),
      absl::Microseconds(600), absl::Milliseconds(3)};
};

// Sends `n` batches back to back (the link busy), each consumed `step`
// after it arrives; returns the time after the last ack.
absl::Time Drive(LinkEstimator* e, const FakeLink& link, int n,
                 absl::Duration step, absl::Time now) {
  absl::Time link_free = now;
  for (int i = 0; i < n; ++i) {
    const int rung = e->rung();
    Delivery d;
    d.batch_id = i;
    d.raw_bytes = link.raw;
    d.wire_bytes = static_cast<int64_t>(link.raw * link.ratio[rung]);
    d.encoding = LinkEstimator::Rung(rung);
    d.encode_time = link.encode[rung];
    d.sent = now + d.encode_time;
    e->Sent(d);
    const absl::Time start = std::max(d.sent, link_free);
    link_free = start + absl::Seconds(d.wire_bytes / link.bytes_per_s);
    d.received = link_free + link.base;
    e->Received(d);
    d.acked = d.received + step;
    e->Acked(d);
    now = d.sent;
  }
  return link_free + link.base + step;
}

TEST(LinkEstimatorTest, MeasuresBandwidthAndRoundTrip) {
  LinkEstimator e(Stream(1, /*compresses=*/false));
  FakeLink link{6.25e6, absl::Milliseconds(1)};  // 50 Mbit/s
  Drive(&e, link, 40, absl::Milliseconds(1), kT0);
  EXPECT_NEAR(e.bandwidth(), 6.25e6, 6.25e4);
  // The first batch had the link to itself: base + one transmission (8 ms).
  EXPECT_NEAR(absl::ToDoubleMilliseconds(e.min_rtt()), 9.0, 0.1);
  EXPECT_EQ(e.rung(), 0) << "a client without codecs gets none";
  const LinkEstimate est = e.estimate();
  EXPECT_GT(est.queueing_delay, absl::ZeroDuration())
      << "batches sent back to back queue behind each other";
}

// Receipts reach the service late by 0 or 4 ms in turn (a busy receiver
// thread, receipts sharing a message): one batch's rate would read 2x the
// link (50 KB in 4 ms instead of 8); a span of receipts stays near it.
TEST(LinkEstimatorTest, LateReceiptsDoNotInflateTheBandwidth) {
  LinkEstimator e(Stream(1, false));
  const double bytes_per_s = 6.25e6;
  const int64_t bytes = 50000;  // 8 ms each
  absl::Time link_free = kT0;
  for (int i = 0; i < 60; ++i) {
    Delivery d;
    d.batch_id = i;
    d.raw_bytes = d.wire_bytes = bytes;
    d.sent = kT0 + absl::Microseconds(10 * i);  // all queued at once
    e.Sent(d);
    link_free =
        std::max(link_free, d.sent) + absl::Seconds(bytes / bytes_per_s);
    d.received = link_free + absl::Milliseconds(i % 2 == 0 ? 4 : 0);
    e.Received(d);
  }
  EXPECT_NEAR(e.bandwidth(), bytes_per_s, 0.1 * bytes_per_s);
}

TEST(LinkEstimatorTest, CompressesHarderOnASlowLink) {
  LinkEstimator e(Stream(1));
  FakeLink link{6.25e6, absl::Milliseconds(1)};
  Drive(&e, link, 200, absl::Milliseconds(1), kT0);
  // Transmission (8 ms raw) dwarfs every encode time: the strongest rung
  // whose encode + transmit is least: zstd:7 (3 + 2.4 ms) loses to zstd:3
  // (0.6 + 2.8 ms).
  EXPECT_EQ(e.rung(), 3) << WireEncodingName(e.encoding());
}

TEST(LinkEstimatorTest, StaysUncompressedOnAFastLink) {
  LinkEstimator e(Stream(1));
  FakeLink link{5e9, absl::Microseconds(50)};  // loopback-like
  Drive(&e, link, 200, absl::Milliseconds(1), kT0);
  EXPECT_EQ(e.rung(), 0) << WireEncodingName(e.encoding());
}

TEST(LinkEstimatorTest, BacksOffWhenTheLinkSpeedsUp) {
  LinkEstimator e(Stream(1));
  FakeLink slow{6.25e6, absl::Milliseconds(1)};
  absl::Time t = Drive(&e, slow, 200, absl::Milliseconds(1), kT0);
  ASSERT_GT(e.rung(), 0);
  // 20 s later (past the bandwidth window) the link is 100x faster.
  FakeLink fast{6.25e8, absl::Milliseconds(1)};
  Drive(&e, fast, 400, absl::Milliseconds(1), t + absl::Seconds(20));
  EXPECT_LE(e.rung(), 1) << WireEncodingName(e.encoding());
}

TEST(LinkEstimatorTest, WindowCoversTheRoundTripAndGrowsOnStalls) {
  LinkEstimator e(Stream(1, false));
  FakeLink link{6.25e8, absl::Milliseconds(40)};  // long, fast
  Drive(&e, link, 50, absl::Milliseconds(5), kT0);
  // Batches sent back to back are acked as fast as they arrive here, so the
  // ack interval is the link's.
  const int64_t w = e.window();
  EXPECT_GE(w, 2);
  EXPECT_LE(w, 64);
  ClientReport stall;
  stall.stall = absl::Milliseconds(3);
  e.Report(stall);
  Delivery ack;
  ack.acked = kT0 + absl::Seconds(1);
  e.Acked(ack);
  EXPECT_GE(e.window(), std::min<int64_t>(64, 2 * w));
}

TEST(LinkEstimatorTest, WindowFollowsConsumption) {
  LinkEstimator e(Stream(1, false));
  // Base round trip 20 ms; the worker acks every 5 ms: lead ~ 20/5 + 1.
  absl::Time t = kT0;
  for (int i = 0; i < 100; ++i) {
    Delivery d;
    d.wire_bytes = 1000;
    d.raw_bytes = 1000;
    d.sent = t;
    d.received = t + absl::Milliseconds(20);
    e.Received(d);
    d.acked = t + absl::Milliseconds(25);
    e.Acked(d);
    t += absl::Milliseconds(5);
  }
  EXPECT_GE(e.window(), 5);
  EXPECT_LE(e.window(), 7);
}

TEST(CongestionAwarePolicyTest, PicksTheLeastFilledAndHonoursWindows) {
  CongestionAwarePolicy p;
  p.OnStreamOpened(Stream(1));
  p.OnStreamOpened(Stream(2));
  LinkState busy;
  busy.unacked = 3;
  busy.credits = 5;
  LinkState idle;
  idle.unacked = 0;
  idle.credits = 5;
  p.OnCredits(1, 8, kT0, busy);
  p.OnCredits(2, 5, kT0, idle);
  EXPECT_EQ(p.Window(1), 4);  // the initial window, before any measurement
  auto all = [](StreamId) { return true; };
  EXPECT_EQ(p.PickStream(all), 2);
  auto only1 = [](StreamId id) { return id == 1; };
  EXPECT_EQ(p.PickStream(only1), 1);
  auto none = [](StreamId) { return false; };
  EXPECT_EQ(p.PickStream(none), std::nullopt);
  p.OnStreamClosed(2, absl::OkStatus(), 0);
  EXPECT_EQ(p.Window(2), 0);
  EXPECT_EQ(p.PickStream(all), 1);
  ASSERT_TRUE(p.Estimate(1).has_value());
  EXPECT_FALSE(p.Estimate(2).has_value());
}

TEST(CongestionAwarePolicyTest, IsRegistered) {
  auto p = CreateDispatchPolicy("congestion_aware", {});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->name(), "congestion_aware");
}

}  // namespace
}  // namespace paragan
