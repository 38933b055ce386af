#include "worker/train/gan_trainer.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "worker/engine/model_registry.h"

namespace paragan {
namespace {

// Batch-dimension concatenation of two [B, ...] tensors.
Tensor ConcatBatch(Backend* b, const Tensor& x, const Tensor& y) {
  Shape shape = x.shape();
  shape[0] = x.dim(0) + y.dim(0);
  Tensor out = b->Alloc(shape);
  Tensor xf = x.Reshape({1, x.numel()}), yf = y.Reshape({1, y.numel()});
  Tensor of = out.Reshape({1, out.numel()});
  b->ConcatChannels({&xf, &yf}, &of);
  return out;
}

// The EMA generator runs on G's statistics (BN running stats, spectral-norm
// vectors): they are copied, not averaged.
void CopyBuffers(Backend* b, ParamStore& from, ParamStore* to) {
  for (auto& [name, buf] : from.buffers()) b->Copy(*buf, to->FindBuffer(name));
}

}  // namespace

TrainerConfig DefaultTrainerConfig(const std::string& model_name) {
  TrainerConfig c;
  c.model = DefaultModelConfig(model_name);
  if (const ModelSpec* spec = FindModelSpec(model_name)) {
    c.g_adam = spec->trainer.g_adam;
    c.d_adam = spec->trainer.d_adam;
    c.d_steps = spec->trainer.d_steps;
    c.loss = spec->trainer.loss;
  }
  return c;
}

absl::StatusOr<std::unique_ptr<GanTrainer>> GanTrainer::Create(
    const TrainerConfig& config, Backend* backend) {
  if (config.batch_size < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size must be >= 1, got ", config.batch_size));
  if (config.d_steps < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("d_steps must be >= 1, got ", config.d_steps));
  if (!(config.ema_decay >= 0 && config.ema_decay < 1))
    return absl::InvalidArgumentError(
        absl::StrCat("ema_decay must be in [0, 1), got ", config.ema_decay));
  for (const AdamConfig* a : {&config.g_adam, &config.d_adam}) {
    if (!(a->lr > 0) || a->beta1 < 0 || a->beta1 >= 1 || a->beta2 < 0 ||
        a->beta2 >= 1 || !(a->eps > 0))
      return absl::InvalidArgumentError(
          absl::StrCat("invalid Adam settings lr=", a->lr, " betas=(", a->beta1,
                       ", ", a->beta2, ") eps=", a->eps));
  }
  PG_ASSIGN_OR_RETURN(std::unique_ptr<GanModel> model,
                      MakeModel(config.model, backend));
  PG_ASSIGN_OR_RETURN(std::unique_ptr<GanModel> ema,
                      MakeModel(config.model, backend));
  model->Initialize(config.seed);
  auto t = std::unique_ptr<GanTrainer>(
      new GanTrainer(config, backend, std::move(model), std::move(ema)));
  // The EMA starts as a copy of G.
  ParamStore& g = t->model_->generator();
  ParamStore& e = t->ema_->generator();
  for (Param& p : g.params())
    backend->Copy(p.value, &e.FindParam(p.name)->value);
  CopyBuffers(backend, g, &e);
  return t;
}

GanTrainer::GanTrainer(const TrainerConfig& config, Backend* backend,
                       std::unique_ptr<GanModel> model,
                       std::unique_ptr<GanModel> ema)
    : config_(config),
      backend_(backend),
      model_(std::move(model)),
      ema_(std::move(ema)),
      g_adam_(&model_->generator(), config.g_adam),
      d_adam_(&model_->discriminator(), config.d_adam),
      rng_(config.seed, /*stream=*/3) {}

Tensor GanTrainer::RandomZ(int n, Rng* rng) const {
  Tensor z = Tensor::Host({n, config_.model.z_dim});
  for (int64_t i = 0; i < z.numel(); ++i) z.data()[i] = rng->Normal();
  return backend_->FromHost(z);
}

std::vector<int> GanTrainer::RandomLabels(int n) {
  std::vector<int> labels(n, 0);
  if (model_->conditional())
    for (int& l : labels)
      l = static_cast<int>(rng_.Below(config_.model.num_classes));
  return labels;
}

StepStats GanTrainer::Step(const BatchSource& next_real) {
  StepStats stats;
  for (int k = 0; k < config_.d_steps; ++k) {
    Tensor real;
    std::vector<int> real_labels;
    next_real(&real, &real_labels);
    ComputeDGradients(real, real_labels, &stats);
    ApplyDGradients();
  }
  ComputeGGradients(&stats);
  ApplyGGradients();
  FinishStep();
  return stats;
}

void GanTrainer::ComputeDGradients(const Tensor& real,
                                   const std::vector<int>& real_labels,
                                   StepStats* stats) {
  const int b = config_.batch_size;
  Tensor z = noise_source_ ? noise_source_(b) : RandomZ(b, &rng_);
  std::vector<int> fake_labels = RandomLabels(b);
  // The fake batch is a constant for D: no G gradients, no G power iteration.
  Tensor fake = model_->Generate(z, fake_labels, Mode::FakesForDStep());
  ComputeDGradientsOn(real, real_labels, fake, fake_labels, stats);
}

void GanTrainer::ComputeDGradientsOn(const Tensor& real,
                                     const std::vector<int>& real_labels,
                                     const Tensor& fake,
                                     const std::vector<int>& fake_labels,
                                     StepStats* stats) {
  const int b = config_.batch_size;
  ParamStore& d = model_->discriminator();
  // Real and fake in one D pass: one power iteration per D step.
  Tensor both = ConcatBatch(backend_, real, fake);
  std::vector<int> labels = real_labels;
  labels.insert(labels.end(), fake_labels.begin(), fake_labels.end());
  d.ZeroGrads();
  Tensor logits =
      backend_->ToHost(model_->Discriminate(both, labels, Mode::DStep()));
  std::vector<float> lr(logits.data(), logits.data() + b);
  std::vector<float> lf(logits.data() + b, logits.data() + 2 * b);
  std::vector<float> dr, df;
  stats->d_loss = DiscriminatorLoss(config_.loss, lr, lf, &dr, &df);
  stats->d_real = stats->d_fake = 0;
  for (int i = 0; i < b; ++i) {
    stats->d_real += lr[i] / b;
    stats->d_fake += lf[i] / b;
  }
  dr.insert(dr.end(), df.begin(), df.end());
  Tensor dlogits = Tensor::Host({2 * b, 1});
  std::memcpy(dlogits.data(), dr.data(), dr.size() * sizeof(float));
  model_->DiscriminateBackward(backend_->FromHost(dlogits));
}

void GanTrainer::ApplyDGradients() { d_adam_.Step(); }

void GanTrainer::ComputeGGradients(StepStats* stats, Tensor* fake_out,
                                   std::vector<int>* labels_out) {
  const int b = config_.batch_size;
  ParamStore& g = model_->generator();
  // G step with fresh z; D is fixed (no D grads, no D power iteration).
  Tensor z = noise_source_ ? noise_source_(b) : RandomZ(b, &rng_);
  std::vector<int> labels = RandomLabels(b);
  g.ZeroGrads();
  Tensor fake = model_->Generate(z, labels, Mode::GStep());
  if (fake_out != nullptr) *fake_out = backend_->ToHost(fake);
  Tensor logits =
      backend_->ToHost(model_->Discriminate(fake, labels, Mode::DForGStep()));
  std::vector<float> lf(logits.data(), logits.data() + b), df;
  stats->g_loss = GeneratorLoss(config_.loss, lf, &df);
  Tensor dlogits = Tensor::HostFrom({b, 1}, df);
  model_->GenerateBackward(
      model_->DiscriminateBackward(backend_->FromHost(dlogits)));
  if (labels_out != nullptr) *labels_out = std::move(labels);
}

Tensor GanTrainer::GenerateFakes(std::vector<int>* labels) {
  const int b = config_.batch_size;
  Tensor z = noise_source_ ? noise_source_(b) : RandomZ(b, &rng_);
  *labels = RandomLabels(b);
  return backend_->ToHost(model_->Generate(z, *labels, Mode::FakesForDStep()));
}

void GanTrainer::ApplyGGradients() { g_adam_.Step(); }

void GanTrainer::FinishStep() {
  UpdateEma();
  ++step_;
}

void GanTrainer::UpdateEma() {
  ParamStore& g = model_->generator();
  ParamStore& e = ema_->generator();
  // Warm-up as in TensorFlow's ExponentialMovingAverage(num_updates): early on
  // the average follows G closely instead of dragging its random start along.
  const float decay =
      std::min(config_.ema_decay,
               static_cast<float>(step_ + 1) / static_cast<float>(step_ + 10));
  for (Param& p : g.params())
    backend_->EmaUpdate(decay, p.value, &e.FindParam(p.name)->value);
  CopyBuffers(backend_, g, &e);
}

Tensor GanTrainer::SampleEma(const Tensor& z, const std::vector<int>& labels) {
  std::vector<int> l = labels;
  if (l.empty()) l.assign(z.dim(0), 0);
  return ema_->Generate(z, l, Mode::Inference());
}

std::vector<std::pair<std::string, Tensor*>> GanTrainer::StateTensors() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (ParamStore* s : {&model_->generator(), &model_->discriminator()}) {
    for (Param& p : s->params()) out.emplace_back("param/" + p.name, &p.value);
    for (auto& [name, t] : s->buffers()) out.emplace_back("buffer/" + name, t);
  }
  for (auto& [name, t] : g_adam_.state()) out.emplace_back("opt/" + name, t);
  for (auto& [name, t] : d_adam_.state()) out.emplace_back("opt/" + name, t);
  for (Param& p : ema_->generator().params())
    out.emplace_back("ema/" + p.name, &p.value);
  return out;
}

absl::StatusOr<std::vector<NamedArray>> GanTrainer::SaveState() {
  std::vector<NamedArray> arrays;
  for (auto& [name, t] : StateTensors()) {
    Tensor host = backend_->ToHost(*t);
    PG_ASSIGN_OR_RETURN(NamedArray a,
                        MakeFloatArray(name, t->shape(), host.ToVector()));
    arrays.push_back(std::move(a));
  }
  const Rng::State rs = rng_.state();
  const ModelConfig& m = config_.model;
  PG_ASSIGN_OR_RETURN(NamedArray meta,
                      MakeInt64Array("meta/counters", {5},
                                     {step_, g_adam_.steps(), d_adam_.steps(),
                                      static_cast<int64_t>(rs.state),
                                      static_cast<int64_t>(rs.inc)}));
  arrays.push_back(std::move(meta));
  PG_ASSIGN_OR_RETURN(
      NamedArray model,
      MakeInt64Array("meta/model", {5},
                     {m.image_channels, m.resolution, m.num_classes, m.z_dim,
                      m.width * 2 + (m.attention ? 1 : 0)}));
  arrays.push_back(std::move(model));
  const std::vector<uint8_t> name(m.name.begin(), m.name.end());
  PG_ASSIGN_OR_RETURN(
      NamedArray model_name,
      MakeUint8Array("meta/model_name", {static_cast<int64_t>(name.size())},
                     name));
  arrays.push_back(std::move(model_name));
  return arrays;
}

absl::StatusOr<ModelConfig> ModelConfigFromState(
    const std::vector<NamedArray>& arrays) {
  const NamedArray* name = FindArray(arrays, "meta/model_name");
  const NamedArray* model = FindArray(arrays, "meta/model");
  if (!name || !model)
    return absl::InvalidArgumentError(
        "checkpoint has no model definition (meta/model_name, meta/model)");
  PG_ASSIGN_OR_RETURN(std::vector<uint8_t> n, ToUint8Vector(*name));
  PG_ASSIGN_OR_RETURN(std::vector<int64_t> v, ToInt64Vector(*model));
  if (v.size() != 5)
    return absl::InvalidArgumentError("checkpoint meta/model has wrong size");
  ModelConfig m;
  m.name.assign(n.begin(), n.end());
  m.image_channels = static_cast<int>(v[0]);
  m.resolution = static_cast<int>(v[1]);
  m.num_classes = static_cast<int>(v[2]);
  m.z_dim = static_cast<int>(v[3]);
  m.width = static_cast<int>(v[4] / 2);
  m.attention = (v[4] % 2) == 1;
  return m;
}

absl::Status GanTrainer::RestoreState(const std::vector<NamedArray>& arrays) {
  PG_ASSIGN_OR_RETURN(ModelConfig stored, ModelConfigFromState(arrays));
  if (ModelSignature(stored) != ModelSignature(config_.model))
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint holds model '", ModelSignature(stored),
                     "' but this run is configured for '",
                     ModelSignature(config_.model), "'"));
  // Validate everything before touching any tensor, so a bad checkpoint
  // leaves the trainer as it was.
  auto tensors = StateTensors();
  std::vector<std::vector<float>> values;
  for (auto& [name, t] : tensors) {
    const NamedArray* a = FindArray(arrays, name);
    if (!a)
      return absl::DataLossError(
          absl::StrCat("checkpoint lacks tensor '", name, "'"));
    if (a->dims != t->shape())
      return absl::DataLossError(absl::StrCat(
          "checkpoint tensor '", name, "' has shape ", ShapeToString(a->dims),
          ", expected ", ShapeToString(t->shape())));
    PG_ASSIGN_OR_RETURN(std::vector<float> v, ToFloatVector(*a));
    values.push_back(std::move(v));
  }
  const NamedArray* counters = FindArray(arrays, "meta/counters");
  if (!counters) return absl::DataLossError("checkpoint lacks meta/counters");
  PG_ASSIGN_OR_RETURN(std::vector<int64_t> c, ToInt64Vector(*counters));
  if (c.size() != 5)
    return absl::DataLossError("checkpoint meta/counters has wrong size");
  for (size_t i = 0; i < tensors.size(); ++i)
    backend_->Upload(values[i].data(), tensors[i].second);
  // The checkpoint holds no EMA buffers: they are G's, as after every step.
  CopyBuffers(backend_, model_->generator(), &ema_->generator());
  step_ = c[0];
  g_adam_.set_steps(c[1]);
  d_adam_.set_steps(c[2]);
  rng_.set_state({static_cast<uint64_t>(c[3]), static_cast<uint64_t>(c[4])});
  return absl::OkStatus();
}

absl::Status WriteCheckpoint(const std::string& path,
                             std::vector<NamedArray> arrays) {
  return WriteTensorFile(path, arrays);
}

}  // namespace paragan
