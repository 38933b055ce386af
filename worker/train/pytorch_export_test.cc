#include "worker/train/pytorch_export.h"

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "worker/engine/backend.h"
#include "worker/engine/params.h"
#include "worker/train/gan_trainer.h"
#include "worker/train/safetensors.h"

namespace paragan {
namespace {

::testing::AssertionResult Contains(const std::string& text,
                                    const std::string& part) {
  if (absl::StrContains(text, part)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "\"" << text << "\" does not contain \"" << part << "\"";
}

// name -> shape of a PyTorch state_dict.
using Keys = std::map<std::string, Shape>;

Keys KeysOf(const std::vector<SafetensorsTensor>& tensors) {
  Keys k;
  for (const SafetensorsTensor& t : tensors) k[t.name] = t.shape;
  return k;
}

// A snapshot of a freshly initialized model's G.
GeneratorSnapshot FreshSnapshot(const ModelConfig& config, Backend* backend) {
  auto model = MakeModel(config, backend);
  EXPECT_TRUE(model.ok()) << model.status();
  (*model)->Initialize(3);
  GeneratorSnapshot s;
  s.model = config;
  s.conditional = (*model)->conditional();
  s.step = 5;
  s.source = "checkpoint";
  s.tensors = NetworkTensors((*model)->generator());
  return s;
}

ModelConfig Config(const std::string& name) {
  ModelConfig c = DefaultModelConfig(name);
  c.width = 8;
  return c;
}

TEST(PytorchExport, Dcgan32MatchesTheReferenceStateDict) {
  // DCGANGenerator().state_dict() of tests/pytorch/paragan_ref.py.
  const Keys expected = {
      {"fc.weight", {4096, 128}},
      {"fc.bias", {4096}},
      {"bn0.weight", {256}},
      {"bn0.bias", {256}},
      {"bn0.running_mean", {256}},
      {"bn0.running_var", {256}},
      {"bn0.num_batches_tracked", {}},
      // ConvTranspose2d: [in, out, k, k], the engine's layout as well.
      {"deconv1.weight", {256, 128, 4, 4}},
      {"deconv1.bias", {128}},
      {"bn1.weight", {128}},
      {"bn1.bias", {128}},
      {"bn1.running_mean", {128}},
      {"bn1.running_var", {128}},
      {"bn1.num_batches_tracked", {}},
      {"deconv2.weight", {128, 64, 4, 4}},
      {"deconv2.bias", {64}},
      {"bn2.weight", {64}},
      {"bn2.bias", {64}},
      {"bn2.running_mean", {64}},
      {"bn2.running_var", {64}},
      {"bn2.num_batches_tracked", {}},
      {"deconv3.weight", {64, 1, 4, 4}},
      {"deconv3.bias", {1}},
  };
  std::unique_ptr<Backend> b = MakeCpuBackend(1);
  GeneratorSnapshot s = FreshSnapshot(DefaultModelConfig("dcgan32"), b.get());
  auto tensors = PytorchGeneratorTensors(s);
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  EXPECT_EQ(KeysOf(*tensors), expected);
  // Values pass through unchanged (no transposition).
  for (const TableTensor& t : s.tensors) {
    const std::string key = *PytorchGeneratorKey(s.model, t.spec.name);
    for (const SafetensorsTensor& st : *tensors) {
      if (st.name == key) {
        EXPECT_EQ(*F32Values(st), t.values) << key;
      }
    }
  }
  for (const SafetensorsTensor& st : *tensors) {
    if (absl::EndsWith(st.name, "num_batches_tracked")) {
      EXPECT_EQ(st.dtype, "I64");
      EXPECT_EQ(*I64Values(st), std::vector<int64_t>{0});
    }
  }
}

// BigGANGenerator(...).state_dict() keys of paragan_ref.py for `blocks` G
// blocks.
Keys BigGanReferenceKeys(const ModelConfig& c, int blocks,
                         const std::vector<int>& g_in,
                         const std::vector<int>& g_out, int attn_after) {
  Keys k;
  const int w = c.width;
  const int chunk = c.z_dim / (blocks + 1);
  const int cond = chunk + 128;
  auto sn = [&](const std::string& p, Shape weight, bool bias) {
    k[p + ".weight"] = weight;
    if (bias) k[p + ".bias"] = {weight[0]};
    k[p + ".sn_u"] = {weight[0]};
    k[p + ".sn_v"] = {NumElements(weight) / weight[0]};
  };
  k["shared.weight"] = {c.num_classes, 128};
  sn("linear", {g_in[0] * w * 16, chunk}, true);
  for (int i = 0; i < blocks; ++i) {
    const std::string b = absl::StrCat("blocks.", i, ".");
    const int64_t in = g_in[i] * w, out = g_out[i] * w;
    for (int j = 1; j <= 2; ++j) {
      const std::string cbn = absl::StrCat(b, "cbn", j, ".");
      const int64_t ch = j == 1 ? in : out;
      k[cbn + "bn.running_mean"] = {ch};
      k[cbn + "bn.running_var"] = {ch};
      k[cbn + "bn.num_batches_tracked"] = {};
      sn(cbn + "gain", {ch, cond}, false);
      sn(cbn + "bias", {ch, cond}, false);
    }
    sn(b + "conv1", {out, in, 3, 3}, true);
    sn(b + "conv2", {out, out, 3, 3}, true);
    sn(b + "conv_sc", {out, in, 1, 1}, true);
  }
  if (c.attention) {
    const int64_t a = g_out[attn_after] * w;
    k["attn.gamma"] = {};
    sn("attn.theta", {a / 8, a, 1, 1}, false);
    sn("attn.phi", {a / 8, a, 1, 1}, false);
    sn("attn.g", {a / 2, a, 1, 1}, false);
    sn("attn.o", {a, a / 2, 1, 1}, false);
  }
  const int64_t last = g_out.back() * w;
  k["bn_out.weight"] = {last};
  k["bn_out.bias"] = {last};
  k["bn_out.running_mean"] = {last};
  k["bn_out.running_var"] = {last};
  k["bn_out.num_batches_tracked"] = {};
  sn("conv_out", {c.image_channels, last, 3, 3}, true);
  return k;
}

TEST(PytorchExport, BigGanMatchesTheReferenceStateDict) {
  std::unique_ptr<Backend> b = MakeCpuBackend(1);
  struct Case {
    std::string name;
    int blocks;
    std::vector<int> g_in, g_out;
    int attn_after;
    bool attention;
    int channels;
  };
  for (const Case& c : std::vector<Case>{
           {"biggan32", 3, {4, 4, 4}, {4, 4, 4}, 1, true, 3},
           {"biggan32", 3, {4, 4, 4}, {4, 4, 4}, 1, false, 1},
           {"biggan64", 4, {16, 16, 8, 4}, {16, 8, 4, 2}, 2, true, 3},
           {"biggan128", 5, {16, 16, 8, 4, 2}, {16, 8, 4, 2, 1}, 3, true, 1},
       }) {
    SCOPED_TRACE(c.name + (c.attention ? " attention" : " no attention"));
    ModelConfig config = Config(c.name);
    config.attention = c.attention;
    config.image_channels = c.channels;
    GeneratorSnapshot s = FreshSnapshot(config, b.get());
    auto tensors = PytorchGeneratorTensors(s);
    ASSERT_TRUE(tensors.ok()) << tensors.status();
    EXPECT_EQ(KeysOf(*tensors), BigGanReferenceKeys(config, c.blocks, c.g_in,
                                                    c.g_out, c.attn_after));
  }
}

TEST(PytorchExport, MapsNamesAndRefusesUnknownOnes) {
  const ModelConfig big = Config("biggan32");
  EXPECT_EQ(*PytorchGeneratorKey(big, "g.block2.bn1.running_var"),
            "blocks.2.cbn1.bn.running_var");
  EXPECT_EQ(*PytorchGeneratorKey(big, "g.block0.bn2.bias.sn_v"),
            "blocks.0.cbn2.bias.sn_v");
  EXPECT_EQ(*PytorchGeneratorKey(big, "g.bn_out.bias"), "bn_out.bias");
  EXPECT_EQ(*PytorchGeneratorKey(big, "g.attn.o.sn_u"), "attn.o.sn_u");
  for (const char* bad :
       {"g.block3.conv1.weight", "g.block01.conv1.weight",
        "g.blockx.conv1.bias", "g.block0.bn1.weight", "g.attn.theta.bias",
        "d.linear.weight", "g.linear", "g.linear.weight.x", "g.fc.weight",
        "linear.weight"}) {
    auto k = PytorchGeneratorKey(big, bad);
    EXPECT_FALSE(k.ok()) << bad << " -> " << *k;
    if (!k.ok()) {
      EXPECT_TRUE(Contains(
          std::string(k.status().message()),
          absl::StrCat("no PyTorch name for generator tensor '", bad, "'")));
    }
  }
  const ModelConfig dc = DefaultModelConfig("dcgan32");
  EXPECT_EQ(*PytorchGeneratorKey(dc, "g.deconv2.weight"), "deconv2.weight");
  EXPECT_FALSE(PytorchGeneratorKey(dc, "g.bn3.weight").ok());
  EXPECT_FALSE(PytorchGeneratorKey(dc, "g.shared.weight").ok());
  EXPECT_FALSE(PytorchGeneratorKey(dc, "g.fc.sn_u").ok());
}

TEST(PytorchExport, RefusesModelsWithoutAReferenceGenerator) {
  ModelConfig c = DefaultModelConfig("dcgan32");
  c.image_channels = 3;
  absl::Status st = CheckPytorchReferenceSupports(c);
  EXPECT_TRUE(absl::IsInvalidArgument(st));
  EXPECT_TRUE(Contains(std::string(st.message()), "1 channel"));
  c.name = "stylegan9";
  st = CheckPytorchReferenceSupports(c);
  EXPECT_TRUE(Contains(std::string(st.message()),
                       "model 'stylegan9' has no generator in "
                       "tests/pytorch/paragan_ref.py"));
  EXPECT_TRUE(Contains(std::string(st.message()), "supported: dcgan32"));
  EXPECT_TRUE(Contains(std::string(st.message()), "biggan128"));
}

TEST(PytorchExport, ParsesTheGeneratorFlag) {
  EXPECT_EQ(*ParseExportedGenerator("ema"), ExportedGenerator::kEma);
  EXPECT_EQ(*ParseExportedGenerator("raw"), ExportedGenerator::kRaw);
  EXPECT_FALSE(ParseExportedGenerator("g").ok());
}

TEST(PytorchExport, SnapshotsACheckpointsEmaOrRawGenerator) {
  std::unique_ptr<Backend> b = MakeCpuBackend(1);
  TrainerConfig tc = DefaultTrainerConfig("biggan32");
  tc.model.width = 8;
  tc.model.image_channels = 1;
  tc.batch_size = 2;
  auto trainer = GanTrainer::Create(tc, b.get());
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  // One step so that G and its EMA differ.
  Rng rng(1, 3);
  (*trainer)->Step([&](Tensor* images, std::vector<int>* labels) {
    *images = b->Alloc({2, 1, 32, 32});
    std::vector<float> v(images->numel());
    for (float& x : v) x = static_cast<float>(rng.Uniform() * 2 - 1);
    b->Upload(v.data(), images);
    *labels = {0, 1};
  });
  auto arrays = (*trainer)->SaveState();
  ASSERT_TRUE(arrays.ok()) << arrays.status();
  for (ExportedGenerator which :
       {ExportedGenerator::kEma, ExportedGenerator::kRaw}) {
    auto s = SnapshotFromCheckpoint(*arrays, which);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->step, 1);
    EXPECT_TRUE(s->conditional);
    EXPECT_EQ(s->model.width, 8);
    GanModel& m = which == ExportedGenerator::kEma ? (*trainer)->ema_model()
                                                   : (*trainer)->model();
    std::vector<TableTensor> want = NetworkTensors(m.generator());
    ASSERT_EQ(s->tensors.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(s->tensors[i].spec.name, want[i].spec.name);
      EXPECT_EQ(s->tensors[i].values, want[i].values) << want[i].spec.name;
    }
    const auto meta = PytorchExportMetadata(*s);
    EXPECT_EQ(meta.at("generator"), ExportedGeneratorName(which));
    EXPECT_EQ(meta.at("num_classes"), "10");
    EXPECT_EQ(meta.at("step"), "1");
  }
  // G and its EMA differ after a step, so the snapshots do.
  auto ema = SnapshotFromCheckpoint(*arrays, ExportedGenerator::kEma);
  auto raw = SnapshotFromCheckpoint(*arrays, ExportedGenerator::kRaw);
  EXPECT_NE(ema->tensors[1].values, raw->tensors[1].values);
}

TEST(PytorchExport, SnapshotsServerTables) {
  std::unique_ptr<Backend> b = MakeCpuBackend(1);
  const ModelConfig config = DefaultModelConfig("dcgan32");
  GeneratorSnapshot fresh = FreshSnapshot(config, b.get());
  ServerTables t;
  t.g_version = 42;
  for (const TableTensor& x : fresh.tensors) {
    t.g[x.spec.name] = {x.spec.shape, x.values};
    if (x.spec.trainable) {
      std::vector<float> e = x.values;
      for (float& v : e) v += 1;
      t.g_ema[x.spec.name] = {x.spec.shape, e};
    }
  }
  // Without an EMA only the raw G can be exported.
  t.no_ema_reason = "ema_decay is 0";
  auto none = SnapshotFromServerTables(config, t, ExportedGenerator::kEma);
  EXPECT_TRUE(absl::IsFailedPrecondition(none.status()));
  EXPECT_TRUE(Contains(std::string(none.status().message()), "ema_decay is 0"));
  t.have_ema = true;
  auto ema = SnapshotFromServerTables(config, t, ExportedGenerator::kEma);
  ASSERT_TRUE(ema.ok()) << ema.status();
  EXPECT_EQ(ema->step, 42);
  EXPECT_EQ(ema->source, "ps");
  ASSERT_EQ(ema->tensors.size(), fresh.tensors.size());
  for (size_t i = 0; i < fresh.tensors.size(); ++i) {
    std::vector<float> want = fresh.tensors[i].values;
    // Weights from G_ema, buffers from G.
    if (fresh.tensors[i].spec.trainable)
      for (float& v : want) v += 1;
    EXPECT_EQ(ema->tensors[i].values, want) << fresh.tensors[i].spec.name;
  }
  auto raw = SnapshotFromServerTables(config, t, ExportedGenerator::kRaw);
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(raw->tensors[0].values, fresh.tensors[0].values);
  // A missing or misshapen tensor is an error naming it.
  ServerTables missing = t;
  missing.g.erase("g.bn1.running_var");
  auto m = SnapshotFromServerTables(config, missing, ExportedGenerator::kEma);
  EXPECT_TRUE(Contains(std::string(m.status().message()),
                       "no shard returned tensor 'g.bn1.running_var' of "
                       "table G"));
  ServerTables wrong = t;
  wrong.g_ema["g.fc.bias"].shape = {7};
  auto w = SnapshotFromServerTables(config, wrong, ExportedGenerator::kEma);
  EXPECT_TRUE(Contains(std::string(w.status().message()),
                       "tensor 'g.fc.bias' of table G_ema has shape [7]"));
}

TEST(PytorchExport, WritesAFileThatReadsBack) {
  std::unique_ptr<Backend> b = MakeCpuBackend(1);
  ModelConfig config = Config("biggan32");
  GeneratorSnapshot s = FreshSnapshot(config, b.get());
  const std::string path = ::testing::TempDir() + "/pytorch_export.safetensors";
  std::filesystem::remove(path);
  ASSERT_TRUE(WritePytorchGenerator(s, path, false).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(WritePytorchGenerator(s, path, false)));
  ASSERT_TRUE(WritePytorchGenerator(s, path, true).ok());
  auto f = ReadSafetensorsFile(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->metadata, PytorchExportMetadata(s));
  EXPECT_EQ(f->metadata.at("format"), "pt");
  EXPECT_EQ(f->metadata.at("model"), "biggan32");
  EXPECT_EQ(f->metadata.at("z_dim"), "128");
  EXPECT_EQ(f->metadata.at("width"), "8");
  EXPECT_EQ(f->metadata.at("attention"), "true");
  const SafetensorsTensor* gamma = f->Find("attn.gamma");
  ASSERT_NE(gamma, nullptr);
  EXPECT_TRUE(gamma->shape.empty());
  const SafetensorsTensor* conv = f->Find("blocks.1.conv2.weight");
  ASSERT_NE(conv, nullptr);
  for (const TableTensor& t : s.tensors) {
    if (t.spec.name == "g.block1.conv2.weight") {
      EXPECT_EQ(*F32Values(*conv), t.values);
    }
  }
  // dcgan32 with 3 channels has no PyTorch generator: nothing is written.
  ModelConfig rgb = DefaultModelConfig("dcgan32");
  rgb.image_channels = 3;
  GeneratorSnapshot r = FreshSnapshot(rgb, b.get());
  const std::string rgb_path = ::testing::TempDir() + "/rgb.safetensors";
  EXPECT_FALSE(WritePytorchGenerator(r, rgb_path, true).ok());
  EXPECT_FALSE(std::filesystem::exists(rgb_path));
}

}  // namespace
}  // namespace paragan
