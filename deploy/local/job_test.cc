// The job description: which processes a run has, their flags, ports,
// readiness, stages and stop order, for the options that change them.

#include "deploy/local/job.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <tuple>

namespace paragan {
namespace local {
namespace {

bool HasFlag(const ProcessSpec& p, const std::string& flag) {
  return std::find(p.flags.begin(), p.flags.end(), flag) != p.flags.end();
}

// The value of the last --name=... flag (the one a binary takes), or "".
std::string FlagValue(const ProcessSpec& p, const std::string& name) {
  const std::string prefix = "--" + name + "=";
  std::string value;
  bool found = false;
  for (const std::string& f : p.flags) {
    if (f.rfind(prefix, 0) == 0) {
      value = f.substr(prefix.size());
      found = true;
    }
  }
  return found ? value : "<absent>";
}

Job Describe(const LauncherOptions& o) {
  absl::StatusOr<Job> job = DescribeJob(o, "/bin_dir");
  EXPECT_TRUE(job.ok()) << job.status();
  return job.ok() ? *job : Job();
}

TEST(DescribeJob, AuthGivesEveryServiceAndClientTheTokenFile) {
  LauncherOptions o;
  o.out_dir = "/out";
  o.eval_every_s = 30;
  for (const ProcessSpec& p : Describe(o).processes) {
    EXPECT_EQ(FlagValue(p, "auth_token_file"), "<absent>") << p.name;
  }
  o.auth = true;
  EXPECT_EQ(AuthTokenPath(o), "/out/secrets/auth_token");
  int with_token = 0;
  for (const ProcessSpec& p : Describe(o).processes) {
    if (p.role == Role::kInit) {
      EXPECT_EQ(FlagValue(p, "auth_token_file"), "<absent>") << p.name;
    } else {
      EXPECT_EQ(FlagValue(p, "auth_token_file"), "/out/secrets/auth_token")
          << p.name;
      ++with_token;
    }
  }
  // Two shards, the data service, two workers, the live and the final
  // evaluation, the export.
  EXPECT_EQ(with_token, 8);
}

TEST(DescribeJob, TlsGivesServersTheServerCertificateAndClientsTheClients) {
  LauncherOptions o;
  o.out_dir = "/out";
  o.eval_every_s = 30;
  for (const ProcessSpec& p : Describe(o).processes) {
    EXPECT_EQ(FlagValue(p, "tls_cert_file"), "<absent>") << p.name;
  }
  o.tls = true;
  EXPECT_EQ(TlsDir(o), "/out/secrets/tls");
  int servers = 0, clients = 0;
  for (const ProcessSpec& p : Describe(o).processes) {
    if (p.role == Role::kInit) {
      EXPECT_EQ(FlagValue(p, "tls_ca_file"), "<absent>") << p.name;
      continue;
    }
    // Every process verifies its peers against the run's CA (mutual TLS).
    EXPECT_EQ(FlagValue(p, "tls_ca_file"), "/out/secrets/tls/ca.pem") << p.name;
    if (p.role == Role::kShard || p.role == Role::kData) {
      EXPECT_EQ(FlagValue(p, "tls_cert_file"), "/out/secrets/tls/server.pem")
          << p.name;
      EXPECT_EQ(FlagValue(p, "tls_key_file"), "/out/secrets/tls/server.key")
          << p.name;
      ++servers;
    } else {
      EXPECT_EQ(FlagValue(p, "tls_cert_file"), "/out/secrets/tls/client.pem")
          << p.name;
      EXPECT_EQ(FlagValue(p, "tls_key_file"), "/out/secrets/tls/client.key")
          << p.name;
      ++clients;
    }
  }
  EXPECT_EQ(servers, 3);  // two shards, the data service
  EXPECT_EQ(clients, 5);  // two workers, two evaluations, the export
}

TEST(DescribeJob, ProcessesStagesAndOrder) {
  LauncherOptions o;
  o.out_dir = "/out";
  const Job job = Describe(o);
  std::vector<std::string> names;
  for (const ProcessSpec& p : job.processes) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"init", "shard0", "shard1", "data",
                                             "w0", "w1", "export"}));
  EXPECT_EQ(job.stages,
            (std::vector<std::string>{"init", "shards", "data", "workers"}));
  EXPECT_EQ(job.log_dir, "/out/logs");
  const ProcessSpec& init = *FindProcess(job, "init");
  EXPECT_EQ(init.lifecycle, Lifecycle::kStartTask);
  EXPECT_EQ(init.binary, "/bin_dir/worker/train/paragan_init");
  EXPECT_EQ(init.readiness.check, Readiness::Check::kExitedZero);
  EXPECT_EQ(FlagValue(init, "out"), "/out/ps/init.pgt");
  const ProcessSpec& shard = *FindProcess(job, "shard1");
  EXPECT_EQ(shard.binary, "/bin_dir/server/paragan_server");
  EXPECT_EQ(shard.stage, "shards");
  EXPECT_EQ(shard.depends_on, (std::vector<std::string>{"init"}));
  EXPECT_TRUE(shard.critical);
  EXPECT_EQ(shard.readiness.check, Readiness::Check::kShardState);
  EXPECT_TRUE(shard.readiness.wait);
  ASSERT_EQ(shard.ports.size(), 2u);
  EXPECT_EQ(shard.ports[0].source, PortSpec::Source::kPortFile);
  EXPECT_EQ(shard.ports[0].file, "/out/logs/shard1.port");
  // Scraped by a Prometheus beside the run (scrape_targets.h).
  EXPECT_EQ(shard.ports[1].name, "metrics");
  EXPECT_EQ(shard.ports[1].source, PortSpec::Source::kStdoutLine);
  EXPECT_EQ(shard.ports[1].marker, "metrics on port");
  EXPECT_TRUE(HasFlag(shard, "--port_file=/out/logs/shard1.port"));
  EXPECT_EQ(FlagValue(shard, "shard_id"), "1");
  EXPECT_EQ(FlagValue(shard, "num_shards"), "2");
  EXPECT_EQ(FlagValue(shard, "init"), "/out/ps/init.pgt");
  EXPECT_EQ(FlagValue(shard, "checkpoint_dir"), "/out/ps");
  EXPECT_EQ(FlagValue(shard, "staleness_policy"), "reject_above_bound");
  EXPECT_EQ(FlagValue(shard, "ema_decay"), "0.999");
  const ProcessSpec& data = *FindProcess(job, "data");
  ASSERT_EQ(data.ports.size(), 2u);
  EXPECT_EQ(data.ports[0].source, PortSpec::Source::kStdoutLine);
  EXPECT_EQ(data.ports[0].marker, "listening on port");
  // The launcher reads its links off the metrics page (congested-link lines).
  EXPECT_EQ(data.ports[1].name, "metrics");
  EXPECT_EQ(data.ports[1].marker, "metrics on port");
  EXPECT_TRUE(data.critical);
  const ProcessSpec& w1 = *FindProcess(job, "w1");
  EXPECT_FALSE(w1.critical);
  EXPECT_EQ(w1.readiness.check, Readiness::Check::kMetrics);
  EXPECT_FALSE(w1.readiness.wait);  // the progress line shows it starting
  EXPECT_EQ(FlagValue(w1, "seed"), "2");
  EXPECT_EQ(FlagValue(w1, "ps"), "${shard0.grpc},${shard1.grpc}");
  EXPECT_EQ(FlagValue(w1, "data"), "${data.grpc}");
  EXPECT_EQ(FlagValue(w1, "metrics_port_file"), "/out/logs/w1.metrics_port");
  EXPECT_EQ(w1.depends_on,
            (std::vector<std::string>{"shard0", "shard1", "data"}));
  const ProcessSpec& exp = *FindProcess(job, "export");
  EXPECT_EQ(exp.lifecycle, Lifecycle::kFinalTask);
  EXPECT_FALSE(exp.stoppable);  // the outputs are written after a Ctrl-C
  EXPECT_EQ(FlagValue(exp, "ps"), "${shard0.grpc},${shard1.grpc}");
  EXPECT_EQ(FlagValue(exp, "seed"), "1");
  // Stop order: workers, data service, export, shards (checkpoints last).
  EXPECT_LT(w1.stop_order, data.stop_order);
  EXPECT_LT(data.stop_order, exp.stop_order);
  EXPECT_LT(exp.stop_order, shard.stop_order);
  EXPECT_EQ(shard.grace, absl::Seconds(60));
  EXPECT_EQ(data.grace, absl::Seconds(20));
}

TEST(DescribeJob, SyncAndAsync) {
  LauncherOptions o;
  o.num_workers = 3;
  o.mode = "sync";
  const Job sync = Describe(o);
  EXPECT_EQ(FlagValue(*FindProcess(sync, "shard0"), "sync_workers"), "3");
  // Momentum compensation is an asynchronous remedy.
  EXPECT_EQ(FlagValue(*FindProcess(sync, "shard0"), "momentum_compensation"),
            "false");
  o.mode = "async";
  const Job async = Describe(o);
  EXPECT_EQ(FlagValue(*FindProcess(async, "shard0"), "sync_workers"), "0");
  EXPECT_EQ(FlagValue(*FindProcess(async, "shard0"), "momentum_compensation"),
            "true");
  o.momentum_compensation = false;
  EXPECT_EQ(
      FlagValue(*FindProcess(Describe(o), "shard1"), "momentum_compensation"),
      "false");
}

TEST(DescribeJob, ShardAndWorkerCounts) {
  LauncherOptions o;
  o.num_shards = 3;
  o.num_workers = 1;
  o.seed = 10;
  const Job job = Describe(o);
  int shards = 0, workers = 0;
  for (const ProcessSpec& p : job.processes) {
    shards += p.role == Role::kShard;
    workers += p.role == Role::kWorker;
  }
  EXPECT_EQ(shards, 3);
  EXPECT_EQ(workers, 1);
  EXPECT_EQ(FlagValue(*FindProcess(job, "shard2"), "num_shards"), "3");
  EXPECT_EQ(FlagValue(*FindProcess(job, "w0"), "ps"),
            "${shard0.grpc},${shard1.grpc},${shard2.grpc}");
  EXPECT_EQ(FlagValue(*FindProcess(job, "w0"), "seed"), "11");
  EXPECT_EQ(FindProcess(job, "w1"), nullptr);
  EXPECT_EQ(FindProcess(job, "export")->depends_on,
            (std::vector<std::string>{"shard0", "shard1", "shard2"}));
}

TEST(DescribeJob, LeaseOnlyWhenAsked) {
  LauncherOptions o;
  o.model = "biggan32";  // the launcher no longer picks a lease by model
  EXPECT_EQ(FlagValue(*FindProcess(Describe(o), "shard0"), "worker_lease_s"),
            "<absent>");
  o.worker_lease_s = 0;
  EXPECT_EQ(FlagValue(*FindProcess(Describe(o), "shard0"), "worker_lease_s"),
            "0");
  o.worker_lease_s = 45;
  EXPECT_EQ(FlagValue(*FindProcess(Describe(o), "shard1"), "worker_lease_s"),
            "45");
}

TEST(DescribeJob, UserFlagsComeLastAndWin) {
  LauncherOptions o;
  o.ps_flags = "--g_lr=1e-4  --staleness_bound=9";
  o.data_flags = "--prefetch=2";
  o.worker_flags = "--threads=3 --overlap=false";
  o.staleness_policy = "scale_by_inverse_staleness";
  const Job job = Describe(o);
  const ProcessSpec& shard = *FindProcess(job, "shard0");
  EXPECT_EQ(shard.flags.back(), "--staleness_bound=9");
  EXPECT_EQ(FlagValue(shard, "staleness_bound"), "9");
  EXPECT_EQ(FlagValue(shard, "g_lr"), "1e-4");
  // Passed as given: the shards check the name.
  EXPECT_EQ(FlagValue(shard, "staleness_policy"), "scale_by_inverse_staleness");
  EXPECT_EQ(FindProcess(job, "data")->flags.back(), "--prefetch=2");
  const ProcessSpec& w = *FindProcess(job, "w0");
  EXPECT_EQ(w.flags.back(), "--overlap=false");
  EXPECT_EQ(FlagValue(w, "threads"), "3");
}

TEST(ValidateOptions, FlagsThatWireTheJobCannotBeGivenAgain) {
  for (const auto& [field, flag, name] :
       std::vector<std::tuple<std::string LauncherOptions::*, std::string,
                              std::string>>{
           {&LauncherOptions::ps_flags, "--g_lr=1e-4 --metrics_port=-1",
            "ps_flags"},
           {&LauncherOptions::ps_flags, "-port=7000", "ps_flags"},
           {&LauncherOptions::data_flags, "--port=7100", "data_flags"},
           {&LauncherOptions::worker_flags, "--ps=localhost:1", "worker_flags"},
       }) {
    LauncherOptions o;
    o.*field = flag;
    const std::string message(ValidateOptions(o).message());
    EXPECT_NE(message.find(absl::StrCat("--", name, ": ")), std::string::npos)
        << message;
    EXPECT_NE(message.find("paragan_local sets"), std::string::npos) << message;
  }
  // Flags that only tune a process pass, including ones whose names start
  // like a wiring flag.
  LauncherOptions o;
  o.ps_flags = "--portable=1 --checkpoint_interval_s=5 --metrics_port_x";
  o.worker_flags = "--data_plane=false --psx=1";
  o.data_flags = "--prefetch=2";
  EXPECT_TRUE(ValidateOptions(o).ok()) << ValidateOptions(o);
}

TEST(DescribeJob, WorkersReadingTheDatasetThemselves) {
  LauncherOptions o;
  o.worker_data = "local";
  o.dataset = "synthetic";
  const Job job = Describe(o);
  const ProcessSpec& w = *FindProcess(job, "w0");
  EXPECT_EQ(FlagValue(w, "data"), "");
  EXPECT_EQ(FlagValue(w, "dataset"), "synthetic");
  EXPECT_EQ(w.depends_on, (std::vector<std::string>{"shard0", "shard1"}));
}

TEST(DescribeJob, DecoupledScheduleHasGAndDWorkers) {
  LauncherOptions o;
  o.schedule = "decoupled";
  o.g_workers = 1;
  o.d_workers = 2;
  o.num_workers = 3;
  o.max_sample_age = 6;
  o.seed = 10;
  const Job job = Describe(o);
  std::vector<std::string> workers;
  for (const ProcessSpec& p : job.processes) {
    if (p.role == Role::kWorker) workers.push_back(p.name);
  }
  EXPECT_EQ(workers, (std::vector<std::string>{"g0", "d0", "d1"}));
  const ProcessSpec& g = *FindProcess(job, "g0");
  EXPECT_EQ(FlagValue(g, "role"), "g_only");
  EXPECT_EQ(FlagValue(g, "max_sample_age"), "<absent>");
  EXPECT_EQ(FlagValue(g, "data"), "${data.grpc}");
  for (const char* d : {"d0", "d1"}) {
    EXPECT_EQ(FlagValue(*FindProcess(job, d), "role"), "d_only") << d;
    EXPECT_EQ(FlagValue(*FindProcess(job, d), "max_sample_age"), "6") << d;
  }
  // Every worker its own z stream.
  EXPECT_EQ(FlagValue(g, "seed"), "11");
  EXPECT_EQ(FlagValue(*FindProcess(job, "d0"), "seed"), "12");
  EXPECT_EQ(FlagValue(*FindProcess(job, "d1"), "seed"), "13");
  // Asynchronous shards.
  EXPECT_EQ(FlagValue(*FindProcess(job, "shard0"), "sync_workers"), "0");

  // Without counts, num_workers is split, G taking the smaller half.
  LauncherOptions split;
  split.schedule = "decoupled";
  split.num_workers = 5;
  EXPECT_EQ(DecoupledRoles(split).g, 2);
  EXPECT_EQ(DecoupledRoles(split).d, 3);
  EXPECT_EQ(DecoupledRoles(LauncherOptions()).g, 0);  // coupled
}

TEST(DescribeJob, EachTableItsOwnPolicy) {
  LauncherOptions o;
  o.d_table.lr = 4e-4;
  o.g_table.betas = "0,0.9";
  o.g_table.staleness_policy = "scale_by_inverse_staleness";
  o.d_table.staleness_bound = 2;
  o.d_table.push_dtype = "bfloat16";
  const Job job = Describe(o);
  const ProcessSpec& shard = *FindProcess(job, "shard1");
  EXPECT_EQ(FlagValue(shard, "d_lr"), "0.0004");
  EXPECT_EQ(FlagValue(shard, "g_lr"), "<absent>");  // the model's
  EXPECT_EQ(FlagValue(shard, "g_betas"), "0,0.9");
  EXPECT_EQ(FlagValue(shard, "g_staleness_policy"),
            "scale_by_inverse_staleness");
  EXPECT_EQ(FlagValue(shard, "staleness_policy"), "reject_above_bound");
  EXPECT_EQ(FlagValue(shard, "d_staleness_bound"), "2");
  EXPECT_EQ(FlagValue(shard, "g_staleness_bound"), "<absent>");
  const ProcessSpec& w = *FindProcess(job, "w0");
  EXPECT_EQ(FlagValue(w, "d_push_dtype"), "bfloat16");
  EXPECT_EQ(FlagValue(w, "g_push_dtype"), "<absent>");
  EXPECT_EQ(FlagValue(w, "push_dtype"), "float32");

  LauncherOptions bad;
  bad.g_table.push_dtype = "fp8";
  EXPECT_NE(ValidateOptions(bad).message().find("--g_push_dtype"),
            std::string::npos);
  bad = LauncherOptions();
  bad.d_table.lr = 0;
  EXPECT_NE(ValidateOptions(bad).message().find("--d_lr"), std::string::npos);
}

TEST(DescribeJob, AutoRolesLeaveTheSplitToTheDataService) {
  LauncherOptions o;
  o.schedule = "decoupled";
  o.auto_roles = true;
  o.num_workers = 3;
  const Job job = Describe(o);
  for (const char* w : {"w0", "w1", "w2"}) {
    ASSERT_NE(FindProcess(job, w), nullptr) << w;
    EXPECT_EQ(FlagValue(*FindProcess(job, w), "role"), "auto") << w;
    EXPECT_EQ(FlagValue(*FindProcess(job, w), "max_sample_age"), "4") << w;
  }
  EXPECT_EQ(FindProcess(job, "g0"), nullptr);
  o.schedule = "coupled";
  EXPECT_NE(ValidateOptions(o).message().find("--schedule=decoupled"),
            std::string::npos);
  o.schedule = "decoupled";
  o.g_workers = 1;
  EXPECT_NE(ValidateOptions(o).message().find("--num_workers"),
            std::string::npos);
}

TEST(ScaleWorkers, AnAddedWorkerIsTheJobsOwnWorkerOfThatIndex) {
  LauncherOptions o;
  o.out_dir = "/out";
  o.num_workers = 3;
  o.auth = true;
  const Job job = Describe(o);
  // w2 as DescribeJob has it and as a scale-up adds it: the same process.
  const ProcessSpec added = AddedWorkerSpec(o, "/bin_dir", 2);
  const ProcessSpec* w2 = FindProcess(job, "w2");
  ASSERT_NE(w2, nullptr);
  EXPECT_EQ(added.name, "w2");
  EXPECT_EQ(added.flags, w2->flags);
  EXPECT_EQ(added.depends_on, w2->depends_on);
  EXPECT_EQ(added.stop_order, w2->stop_order);
  EXPECT_EQ(FlagValue(added, "auth_token_file"), "/out/secrets/auth_token");
  // A new index: its own id, seed and port file.
  const ProcessSpec w7 = AddedWorkerSpec(o, "/bin_dir", 7);
  EXPECT_EQ(FlagValue(w7, "worker_id"), "w7");
  EXPECT_EQ(FlagValue(w7, "seed"), std::to_string(o.seed + 8));
  EXPECT_EQ(FlagValue(w7, "metrics_port_file"), "/out/logs/w7.metrics_port");
  // Auto roles: an added worker asks for its role too.
  o.schedule = "decoupled";
  o.auto_roles = true;
  EXPECT_EQ(FlagValue(AddedWorkerSpec(o, "/bin_dir", 5), "role"), "auto");
}

TEST(ScaleWorkers, WhichCountsARunMayTake) {
  LauncherOptions o;
  o.num_workers = 2;
  EXPECT_TRUE(CheckWorkerCount(o, 2, 1).ok());
  EXPECT_TRUE(CheckWorkerCount(o, 2, 16).ok());
  EXPECT_EQ(CheckWorkerCount(o, 2, 0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_NE(CheckWorkerCount(o, 2, 1000).message().find("between 1 and 256"),
            std::string::npos);
  o.mode = "sync";
  EXPECT_TRUE(CheckWorkerCount(o, 2, 1).ok());
  EXPECT_TRUE(CheckWorkerCount(o, 2, 2).ok());
  const absl::Status grow = CheckWorkerCount(o, 1, 2);
  EXPECT_EQ(grow.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(grow.message().find("scales down only (it has 1 worker(s))"),
            std::string::npos)
      << grow;
  o.mode = "async";
  o.schedule = "decoupled";
  EXPECT_EQ(CheckWorkerCount(o, 2, 3).code(),
            absl::StatusCode::kFailedPrecondition);
  o.auto_roles = true;
  EXPECT_TRUE(CheckWorkerCount(o, 2, 3).ok());
}

TEST(DescribeJob, DecoupledScheduleRefusesWhatCannotWork) {
  auto message = [](const LauncherOptions& o) {
    return std::string(ValidateOptions(o).message());
  };
  LauncherOptions o;
  o.schedule = "lockstep";
  EXPECT_NE(message(o).find("--schedule"), std::string::npos);
  o = LauncherOptions();
  o.g_workers = 1;  // coupled
  EXPECT_NE(message(o).find("--schedule=decoupled"), std::string::npos);
  o = LauncherOptions();
  o.schedule = "decoupled";
  o.num_workers = 1;  // 0 G + 1 D
  EXPECT_NE(message(o).find("at least one G and one D"), std::string::npos);
  o = LauncherOptions();
  o.schedule = "decoupled";
  o.mode = "sync";
  EXPECT_NE(message(o).find("--mode=async"), std::string::npos);
  o = LauncherOptions();
  o.schedule = "decoupled";
  o.worker_data = "local";
  EXPECT_NE(message(o).find("data service"), std::string::npos);
}

TEST(DescribeJob, RejectsBadOptions) {
  LauncherOptions o;
  o.num_workers = 0;
  EXPECT_EQ(DescribeJob(o, "/b").status().code(),
            absl::StatusCode::kInvalidArgument);
  o = LauncherOptions();
  o.mode = "lockstep";
  EXPECT_NE(DescribeJob(o, "/b").status().message().find("--mode"),
            std::string::npos);
  o = LauncherOptions();
  o.worker_data = "nfs";
  EXPECT_FALSE(ValidateOptions(o).ok());
  // Not the launcher's to judge: the shards know their policies.
  o = LauncherOptions();
  o.staleness_policy = "bogus";
  EXPECT_TRUE(ValidateOptions(o).ok());
}

TEST(DescribeJob, LiveEvaluatorBesideTheWorkers) {
  LauncherOptions o;
  o.out_dir = "/out";
  o.num_shards = 2;
  EXPECT_EQ(FindProcess(Describe(o), "eval"), nullptr);  // off by default
  o.eval_every_s = 30;
  o.eval_reference = "/cache/ref.pgt";
  o.eval_samples = 5000;
  o.eval_flags = "--threads=2";
  const Job job = Describe(o);
  std::vector<std::string> names;
  for (const ProcessSpec& p : job.processes) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"init", "eval-ref", "shard0",
                                             "shard1", "data", "w0", "w1",
                                             "eval", "export", "eval-final"}));
  // The final evaluation: after the export, from the final tables.
  const ProcessSpec& fin = *FindProcess(job, "eval-final");
  EXPECT_EQ(fin.lifecycle, Lifecycle::kFinalTask);
  EXPECT_EQ(fin.stop_order, FindProcess(job, "export")->stop_order);
  EXPECT_EQ(FlagValue(fin, "num_samples"), "10000");
  EXPECT_EQ(FlagValue(fin, "every_s"), "<absent>");
  EXPECT_EQ(FlagValue(fin, "csv"), "/out/fid.csv");
  // The reference statistics are checked (or computed) before training.
  const ProcessSpec& ref = *FindProcess(job, "eval-ref");
  EXPECT_EQ(ref.stage, "init");
  EXPECT_EQ(ref.lifecycle, Lifecycle::kStartTask);
  EXPECT_EQ(ref.readiness.check, Readiness::Check::kExitedZero);
  EXPECT_EQ(FlagValue(ref, "reference"), "/cache/ref.pgt");
  EXPECT_EQ(FlagValue(ref, "network"), "fmnist-cnn");
  const ProcessSpec& e = *FindProcess(job, "eval");
  EXPECT_EQ(e.role, Role::kEval);
  EXPECT_EQ(e.binary, "/bin_dir/worker/eval/paragan_eval");
  EXPECT_EQ(e.stage, "workers");
  EXPECT_FALSE(e.critical);
  EXPECT_FALSE(e.readiness.wait);
  EXPECT_EQ(e.stop_order, FindProcess(job, "w0")->stop_order);
  EXPECT_EQ(FlagValue(e, "ps"), "${shard0.grpc},${shard1.grpc}");
  EXPECT_EQ(FlagValue(e, "every_s"), "30");
  EXPECT_EQ(FlagValue(e, "num_samples"), "5000");
  EXPECT_EQ(FlagValue(e, "reference"), "/cache/ref.pgt");
  EXPECT_EQ(FlagValue(e, "csv"), "/out/fid.csv");
  EXPECT_EQ(FlagValue(e, "plot"), "/out/fid.png");
  EXPECT_EQ(FlagValue(e, "threads"), "2");  // the user's flag wins
  ASSERT_EQ(e.ports.size(), 1u);
  EXPECT_EQ(e.ports[0].name, "metrics");

  LauncherOptions no_final = o;
  no_final.eval_final_samples = 0;
  EXPECT_EQ(FindProcess(Describe(no_final), "eval-final"), nullptr);

  LauncherOptions default_reference = o;
  default_reference.eval_reference = "";  // paragan_eval's own cache
  EXPECT_EQ(
      FlagValue(*FindProcess(Describe(default_reference), "eval"), "reference"),
      "<absent>");

  LauncherOptions bad = o;
  bad.eval_final_samples = 1;
  EXPECT_FALSE(DescribeJob(bad, "/b").ok());
  bad = o;
  bad.dataset = "synthetic";
  absl::StatusOr<Job> j = DescribeJob(bad, "/b");
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("--eval_every_s=0"), std::string::npos);
  bad = o;
  bad.eval_every_s = -1;
  EXPECT_FALSE(DescribeJob(bad, "/b").ok());
}

TEST(PortRefs, FindsAndResolves) {
  EXPECT_EQ(PortRefs("--ps=${shard0.grpc},${shard1.grpc}"),
            (std::vector<PortRef>{{"shard0", "grpc"}, {"shard1", "grpc"}}));
  EXPECT_TRUE(PortRefs("--a=$b ${c").empty());
  const std::map<std::string, std::string> ports = {{"shard0.grpc", "h:1"},
                                                    {"shard1.grpc", "h:2"}};
  auto lookup = [&](const PortRef& r) -> absl::StatusOr<std::string> {
    auto it = ports.find(r.process + "." + r.port);
    if (it == ports.end()) return absl::NotFoundError("no such port");
    return it->second;
  };
  EXPECT_EQ(*ResolveFlag("--ps=${shard0.grpc},${shard1.grpc}", lookup),
            "--ps=h:1,h:2");
  EXPECT_EQ(*ResolveFlag("--x=${literal} ${", lookup), "--x=${literal} ${");
  const absl::StatusOr<std::string> bad =
      ResolveFlag("--d=${data.grpc}", lookup);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("${data.grpc}"), std::string::npos);
}

TEST(SplitFlags, Whitespace) {
  EXPECT_EQ(SplitFlags("  --a=1\t--b=2 \n"),
            (std::vector<std::string>{"--a=1", "--b=2"}));
  EXPECT_TRUE(SplitFlags("").empty());
}

}  // namespace
}  // namespace local
}  // namespace paragan
