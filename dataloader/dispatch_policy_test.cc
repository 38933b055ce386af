// The DispatchPolicy registry and RoundRobinPolicy on their own (no gRPC):
// the deal order (also against a copy of the service's dispatch loop from
// before the seam), credits, the recorded observations, unknown names.

#include "dataloader/dispatch_policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "dataloader/link_stats.h"
#include "dataloader/round_robin_policy.h"

namespace paragan {
namespace {

// Registered from this file only: shows the macro works outside the
// policies library and that the names are listed sorted.
class ZzTestOnlyPolicy final : public DispatchPolicy {
 public:
  static constexpr char kName[] = "zz_test_only";
  explicit ZzTestOnlyPolicy(const DispatchPolicyConfig& config)
      : window_(config.max_in_flight) {}
  absl::string_view name() const override { return kName; }
  std::optional<StreamId> PickStream(
      absl::FunctionRef<bool(StreamId)>) override {
    return std::nullopt;
  }
  int64_t Window(StreamId) const override { return window_; }

 private:
  int64_t window_;
};
PARAGAN_REGISTER_DISPATCH_POLICY(ZzTestOnlyPolicy);

// A policy whose factory returns one with another name.
class MisnamedPolicy final : public DispatchPolicy {
 public:
  absl::string_view name() const override { return "something_else"; }
  std::optional<StreamId> PickStream(
      absl::FunctionRef<bool(StreamId)>) override {
    return std::nullopt;
  }
  int64_t Window(StreamId) const override { return kNoWindow; }
};
[[maybe_unused]] const bool kMisnamedRegistered = RegisterDispatchPolicy(
    "misnamed",
    [](const DispatchPolicyConfig&) -> std::unique_ptr<DispatchPolicy> {
      return std::make_unique<MisnamedPolicy>();
    });

TEST(DispatchPolicyRegistryTest, ListsRegisteredPoliciesSorted) {
  EXPECT_EQ(DispatchPolicyNames(),
            (std::vector<std::string>{"congestion_aware", "misnamed",
                                      "round_robin", "zz_test_only"}));
  EXPECT_TRUE(CheckDispatchPolicyName("round_robin").ok());
}

TEST(DispatchPolicyRegistryTest, CreatesByNameWithTheConfig) {
  auto rr = CreateDispatchPolicy("round_robin", {});
  ASSERT_TRUE(rr.ok()) << rr.status();
  EXPECT_EQ((*rr)->name(), "round_robin");
  EXPECT_NE(dynamic_cast<RoundRobinPolicy*>(rr->get()), nullptr);

  DispatchPolicyConfig config;
  config.max_in_flight = 7;
  auto test_only = CreateDispatchPolicy("zz_test_only", config);
  ASSERT_TRUE(test_only.ok()) << test_only.status();
  EXPECT_EQ((*test_only)->name(), "zz_test_only");
  EXPECT_EQ((*test_only)->Window(0), 7);
}

TEST(DispatchPolicyRegistryTest, UnknownNameIsRefusedListingTheKnown) {
  for (const char* name : {"nope", "", "Round_Robin", "round_robin "}) {
    auto p = CreateDispatchPolicy(name, {});
    ASSERT_FALSE(p.ok()) << name;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(
        absl::StrContains(p.status().message(),
                          absl::StrCat("unknown dispatch policy '", name, "'")))
        << p.status();
    EXPECT_TRUE(
        absl::StrContains(p.status().message(),
                          "known: congestion_aware, misnamed, round_robin, "
                          "zz_test_only"))
        << p.status();
    EXPECT_EQ(CheckDispatchPolicyName(name), p.status());
  }
}

TEST(DispatchPolicyRegistryTest, FactoryMustBuildThePolicyItNames) {
  auto p = CreateDispatchPolicy("misnamed", {});
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(absl::StrContains(p.status().message(), "something_else"))
      << p.status();
}

TEST(DispatchPolicyRegistryDeathTest, DuplicateAndMalformedNamesAbort) {
  auto factory =
      [](const DispatchPolicyConfig& c) -> std::unique_ptr<DispatchPolicy> {
    return std::make_unique<RoundRobinPolicy>(c);
  };
  EXPECT_DEATH(RegisterDispatchPolicy("round_robin", factory),
               "registered twice");
  EXPECT_DEATH(RegisterDispatchPolicy("Bad-Name", factory),
               "lower case letters");
  EXPECT_DEATH(RegisterDispatchPolicy("", factory), "lower case letters");
}

// A toy DataService dealing through a DispatchPolicy the way the service
// does: streams with credits, batches of two kinds (dataset, generated) as
// counts, a deal log.
class ToyService {
 public:
  explicit ToyService(DispatchPolicy* policy) : policy_(policy) {}
  void Open(StreamId id, bool want_generated = false) {
    streams_[id].want_generated = want_generated;
    policy_->OnStreamOpened(
        StreamInfo{id, "w", v1::BOTH, want_generated, absl::Now(), false, {}});
  }
  void Grant(StreamId id, int64_t n) {
    streams_.at(id).credits += n;
    if (n > 0) policy_->OnCredits(id, n, absl::Now(), Link(id));
    Dispatch();
  }
  void Produce(int64_t n, bool generated = false) {
    (generated ? generated_ : data_) += n;
    Dispatch();
  }
  void Close(StreamId id) {
    const S& s = streams_.at(id);
    (s.want_generated ? generated_ : data_) += s.unacked;
    streams_.erase(id);
    policy_->OnStreamClosed(id, absl::CancelledError("x"), 0);
    Dispatch();
  }
  void Ack(StreamId id) {
    S& s = streams_.at(id);
    if (s.unacked == 0) return;
    --s.unacked;
    policy_->OnAcked(id, Delivery{}, Link(id));
  }
  // The streams dealt to, in order.
  const std::vector<StreamId>& dealt() const { return dealt_; }
  int64_t credits(StreamId id) const { return streams_.at(id).credits; }

 private:
  struct S {
    bool want_generated = false;
    int64_t credits = 0;
    int64_t unacked = 0;
  };
  LinkState Link(StreamId id) const {
    const S& s = streams_.at(id);
    return LinkState{s.credits, s.unacked, 0, 0};
  }
  bool Eligible(StreamId id) const {
    auto it = streams_.find(id);
    return it != streams_.end() && it->second.credits > 0 &&
           it->second.unacked < policy_->Window(id) &&
           (it->second.want_generated ? generated_ : data_) > 0;
  }
  void Dispatch() {
    for (;;) {
      auto pick =
          policy_->PickStream([this](StreamId id) { return Eligible(id); });
      if (!pick) return;
      ASSERT_TRUE(Eligible(*pick)) << "picked " << *pick;
      S& s = streams_.at(*pick);
      --(s.want_generated ? generated_ : data_);
      --s.credits;
      ++s.unacked;
      dealt_.push_back(*pick);
      policy_->OnDealt(*pick, Delivery{}, Link(*pick));
    }
  }

  DispatchPolicy* policy_;
  std::map<StreamId, S> streams_;
  int64_t data_ = 0;
  int64_t generated_ = 0;
  std::vector<StreamId> dealt_;
};

TEST(RoundRobinPolicyTest, DealsInTheOrderStreamsGotCredit) {
  RoundRobinPolicy rr;
  ToyService h(&rr);
  for (StreamId id : {5, 3, 9}) h.Open(id);
  h.Grant(3, 2);
  h.Grant(9, 1);
  h.Grant(5, 2);
  EXPECT_EQ(rr.line(), (std::vector<StreamId>{3, 9, 5}));
  h.Produce(10);
  // 3 and 5 hold two credits: back of the line after each batch.
  EXPECT_EQ(h.dealt(), (std::vector<StreamId>{3, 9, 5, 3, 5}));
  EXPECT_TRUE(rr.line().empty());
}

TEST(RoundRobinPolicyTest, OneBatchPerCreditNoWindowOfItsOwn) {
  RoundRobinPolicy rr;
  ToyService h(&rr);
  h.Open(1);
  h.Produce(100);
  EXPECT_TRUE(h.dealt().empty()) << "dealt without credit";
  h.Grant(1, 4);
  EXPECT_EQ(h.dealt().size(), 4u);
  EXPECT_EQ(h.credits(1), 0);
  h.Grant(1, 1);  // an ack's credit
  EXPECT_EQ(h.dealt().size(), 5u);
  // Credits are the only limit: even many unacked batches are not capped.
  h.Grant(1, 50);
  EXPECT_EQ(h.dealt().size(), 55u);
  EXPECT_EQ(rr.Window(1), DispatchPolicy::kNoWindow);
  EXPECT_EQ(rr.Window(12345), DispatchPolicy::kNoWindow);
}

TEST(RoundRobinPolicyTest, MoreCreditKeepsTheStreamsPlace) {
  RoundRobinPolicy rr;
  ToyService h(&rr);
  h.Open(1);
  h.Open(2);
  h.Grant(1, 1);
  h.Grant(2, 1);
  h.Grant(1, 1);  // already in line: stays ahead of 2
  EXPECT_EQ(rr.line(), (std::vector<StreamId>{1, 2}));
  h.Produce(1);
  EXPECT_EQ(h.dealt(), (std::vector<StreamId>{1}));
  EXPECT_EQ(rr.line(), (std::vector<StreamId>{2, 1}));
}

TEST(RoundRobinPolicyTest, AStreamWithNothingToTakeKeepsItsPlace) {
  RoundRobinPolicy rr;
  ToyService h(&rr);
  h.Open(1, /*want_generated=*/true);
  h.Open(2);
  h.Grant(1, 1);
  h.Grant(2, 3);
  h.Produce(2);  // dataset batches only: 1 waits, 2 is served
  EXPECT_EQ(h.dealt(), (std::vector<StreamId>{2, 2}));
  EXPECT_EQ(rr.line(), (std::vector<StreamId>{1, 2}));
  h.Produce(1, /*generated=*/true);
  EXPECT_EQ(h.dealt(), (std::vector<StreamId>{2, 2, 1}));
}

TEST(RoundRobinPolicyTest, ClosedStreamsLeaveTheLine) {
  RoundRobinPolicy rr;
  ToyService h(&rr);
  for (StreamId id : {1, 2, 3}) {
    h.Open(id);
    h.Grant(id, 2);
  }
  h.Close(2);
  EXPECT_EQ(rr.line(), (std::vector<StreamId>{1, 3}));
  h.Produce(4);
  EXPECT_EQ(h.dealt(), (std::vector<StreamId>{1, 3, 1, 3}));
}

// The service's Dispatch before the seam, verbatim but for the types, over
// the same toy model: the reference round_robin must reproduce.
class LegacyDispatcher {
 public:
  void Open(StreamId id, bool want_generated) {
    streams_[id] = std::make_unique<S>();
    streams_[id]->id = id;
    streams_[id]->want_generated = want_generated;
  }
  void Grant(StreamId id, int64_t n) {
    S* s = streams_.at(id).get();
    s->credits += n;
    if (s->credits > 0 && !s->waiting) {
      waiting_.push_back(s);
      s->waiting = true;
    }
    Dispatch();
  }
  void Produce(int64_t n, bool generated) {
    (generated ? generated_ : data_) += n;
    Dispatch();
  }
  void Close(StreamId id) {
    S* s = streams_.at(id).get();
    if (s->waiting) {
      waiting_.erase(std::find(waiting_.begin(), waiting_.end(), s));
      s->waiting = false;
    }
    (s->want_generated ? generated_ : data_) += s->unacked;  // requeued
    streams_.erase(id);
    Dispatch();
  }
  void Ack(StreamId id) {
    if (streams_.at(id)->unacked > 0) --streams_.at(id)->unacked;
  }
  const std::vector<StreamId>& dealt() const { return dealt_; }

 private:
  struct S {
    StreamId id;
    bool want_generated = false;
    int64_t credits = 0;
    int64_t unacked = 0;
    bool waiting = false;
  };
  bool TakeFor(const S& s) {
    int64_t& from = s.want_generated ? generated_ : data_;
    if (from == 0) return false;
    --from;
    return true;
  }
  void Dispatch() {
    for (bool dealt = true; dealt;) {
      dealt = false;
      for (size_t i = 0; i < waiting_.size(); ++i) {
        S* s = waiting_[i];
        if (!TakeFor(*s)) continue;
        waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
        --s->credits;
        ++s->unacked;
        dealt_.push_back(s->id);
        if (s->credits == 0) {
          s->waiting = false;
        } else {
          waiting_.push_back(s);
        }
        dealt = true;
        break;
      }
    }
  }

  std::map<StreamId, std::unique_ptr<S>> streams_;
  std::deque<S*> waiting_;
  int64_t data_ = 0;
  int64_t generated_ = 0;
  std::vector<StreamId> dealt_;
};

TEST(RoundRobinPolicyTest, SameDealsAsTheDispatchLoopBeforeTheSeam) {
  for (uint32_t seed = 0; seed < 20; ++seed) {
    std::mt19937 rng(seed);
    LegacyDispatcher legacy;
    RoundRobinPolicy rr;
    ToyService now(&rr);
    std::vector<StreamId> open;
    StreamId next = 0;
    auto pick_open = [&] {
      return open[std::uniform_int_distribution<size_t>(0,
                                                        open.size() - 1)(rng)];
    };
    for (int op = 0; op < 3000; ++op) {
      const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
      if (open.empty() || kind == 0) {
        const bool gen = std::uniform_int_distribution<int>(0, 3)(rng) == 0;
        legacy.Open(next, gen);
        now.Open(next, gen);
        open.push_back(next++);
      } else if (kind <= 3) {
        const StreamId id = pick_open();
        const int64_t n = std::uniform_int_distribution<int64_t>(0, 3)(rng);
        legacy.Grant(id, n);
        now.Grant(id, n);
      } else if (kind <= 5) {
        const bool gen = std::uniform_int_distribution<int>(0, 4)(rng) == 0;
        const int64_t n = std::uniform_int_distribution<int64_t>(1, 3)(rng);
        legacy.Produce(n, gen);
        now.Produce(n, gen);
      } else if (kind <= 8) {
        const StreamId id = pick_open();
        legacy.Ack(id);
        now.Ack(id);
      } else {
        const StreamId id = pick_open();
        legacy.Close(id);
        now.Close(id);
        open.erase(std::find(open.begin(), open.end(), id));
      }
      ASSERT_EQ(now.dealt(), legacy.dealt()) << "seed " << seed << " op " << op;
    }
    EXPECT_GT(legacy.dealt().size(), 500u) << "seed " << seed;
  }
}

TEST(RoundRobinPolicyTest, RecordsWhatItObservesOfEachLink) {
  RoundRobinPolicy rr;
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  rr.OnStreamOpened(StreamInfo{7, "w7", v1::D_ONLY, false, t0, false, {}});
  rr.OnCredits(7, 4, t0, LinkState{4, 0, 0, 9});

  Delivery b;
  b.batch_id = 42;
  b.payload_bytes = 1000;
  b.redelivered = true;
  b.credit_granted = t0;
  b.dealt = t0 + absl::Milliseconds(1);
  rr.OnDealt(7, b, LinkState{3, 1, 1, 8});
  b.sent = t0 + absl::Milliseconds(2);
  rr.OnSent(7, b, LinkState{3, 1, 0, 8});
  b.written = t0 + absl::Milliseconds(5);
  b.acked = t0 + absl::Milliseconds(12);
  rr.OnAcked(7, b, LinkState{3, 0, 0, 8});

  Delivery c = b;
  c.batch_id = 43;
  c.payload_bytes = 500;
  c.redelivered = false;
  c.sent = t0 + absl::Milliseconds(20);
  c.written = absl::InfinitePast();  // the ack beat the writer
  c.acked = t0 + absl::Milliseconds(50);
  rr.OnDealt(7, c, LinkState{2, 1, 1, 7});
  rr.OnSent(7, c, LinkState{2, 1, 0, 7});
  rr.OnAcked(7, c, LinkState{2, 0, 0, 7});

  const LinkStats* s = rr.links().Find(7);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->stream.worker_id, "w7");
  EXPECT_EQ(s->stream.role, v1::D_ONLY);
  EXPECT_EQ(s->credits_granted, 4);
  EXPECT_EQ(s->batches_dealt, 2);
  EXPECT_EQ(s->batches_sent, 2);
  EXPECT_EQ(s->batches_acked, 2);
  EXPECT_EQ(s->bytes_sent, 1500);
  EXPECT_EQ(s->bytes_acked, 1500);
  EXPECT_EQ(s->redelivered, 1);
  EXPECT_EQ(s->last_sent, t0 + absl::Milliseconds(20));
  EXPECT_EQ(s->last_acked, t0 + absl::Milliseconds(50));
  EXPECT_EQ(s->last_delivery, absl::Milliseconds(30));
  EXPECT_EQ(s->mean_delivery(), absl::Milliseconds(20));  // (10 + 30) / 2
  EXPECT_EQ(s->last_write, absl::Milliseconds(3));  // c's write is unknown
  EXPECT_EQ(s->state.credits, 2);
  EXPECT_EQ(s->state.unacked, 0);
  EXPECT_EQ(s->state.available, 7);

  rr.OnStreamClosed(7, absl::CancelledError("gone"), 3);
  EXPECT_EQ(rr.links().Find(7), nullptr);
  EXPECT_EQ(rr.links().closed(), 1);
  EXPECT_EQ(rr.links().requeued(), 3);
  EXPECT_TRUE(rr.links().open().empty());
  // Events for unknown ids are ignored, not recorded.
  rr.OnAcked(7, b, LinkState{});
  EXPECT_TRUE(rr.links().open().empty());
}

}  // namespace
}  // namespace paragan
