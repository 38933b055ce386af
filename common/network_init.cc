#include "common/network_init.h"

#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/tensor_io.h"

namespace paragan {
namespace {

// Array names: "init/format", "init/model", "init/signature",
// "init/optimizer" (g lr, beta1, beta2, eps, then d's), "init/d_steps",
// "init/worker_lease_s" (optional, float32 [1]), then "<G|D>/param/<tensor>"
// and "<G|D>/buffer/<tensor>" in order. Readers skip "init/" arrays they do
// not know, so adding an optional one keeps the format number: older servers
// read newer files (without the hint) and newer ones older files.
constexpr int64_t kFormat = 1;
constexpr char kParam[] = "/param/";
constexpr char kBuffer[] = "/buffer/";

absl::StatusOr<NamedArray> StringArray(std::string name,
                                       const std::string& value) {
  return MakeUint8Array(std::move(name), {static_cast<int64_t>(value.size())},
                        std::vector<uint8_t>(value.begin(), value.end()));
}

absl::Status ValidAdam(const std::string& path, const char* net,
                       const AdamConfig& a) {
  if (!(a.lr > 0) || !(a.beta1 >= 0 && a.beta1 < 1) ||
      !(a.beta2 >= 0 && a.beta2 < 1) || !(a.eps > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": invalid Adam settings for ", net, ": lr=", a.lr,
                     " betas=(", a.beta1, ", ", a.beta2, ") eps=", a.eps));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteNetworkInit(const std::string& path,
                              const NetworkInit& init) {
  if (!(init.worker_lease_s >= 0) || !std::isfinite(init.worker_lease_s)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": worker_lease_s must be finite and >= 0, got ",
                     init.worker_lease_s));
  }
  std::vector<NamedArray> arrays;
  PG_ASSIGN_OR_RETURN(NamedArray format,
                      MakeInt64Array("init/format", {1}, {kFormat}));
  arrays.push_back(std::move(format));
  PG_ASSIGN_OR_RETURN(NamedArray model, StringArray("init/model", init.model));
  arrays.push_back(std::move(model));
  PG_ASSIGN_OR_RETURN(NamedArray sig,
                      StringArray("init/signature", init.signature));
  arrays.push_back(std::move(sig));
  const AdamConfig& g = init.g_adam;
  const AdamConfig& d = init.d_adam;
  PG_ASSIGN_OR_RETURN(NamedArray opt,
                      MakeFloatArray("init/optimizer", {2, 4},
                                     {g.lr, g.beta1, g.beta2, g.eps, d.lr,
                                      d.beta1, d.beta2, d.eps}));
  arrays.push_back(std::move(opt));
  PG_ASSIGN_OR_RETURN(
      NamedArray steps,
      MakeInt64Array("init/d_steps", {1}, {int64_t{init.d_steps_per_g_step}}));
  arrays.push_back(std::move(steps));
  PG_ASSIGN_OR_RETURN(
      NamedArray lease,
      MakeFloatArray("init/worker_lease_s", {1},
                     {static_cast<float>(init.worker_lease_s)}));
  arrays.push_back(std::move(lease));
  for (const auto& [net, tensors] :
       {std::pair<const char*, const std::vector<TableTensor>*>{"G", &init.g},
        {"D", &init.d}}) {
    for (const TableTensor& t : *tensors) {
      PG_ASSIGN_OR_RETURN(
          NamedArray a,
          MakeFloatArray(absl::StrCat(net, t.spec.trainable ? kParam : kBuffer,
                                      t.spec.name),
                         t.spec.shape, t.values));
      arrays.push_back(std::move(a));
    }
  }
  return WriteTensorFile(path, arrays);
}

absl::StatusOr<NetworkInit> ReadNetworkInit(const std::string& path) {
  absl::StatusOr<std::vector<NamedArray>> read = ReadTensorFile(path);
  if (!read.ok()) {
    return absl::Status(read.status().code(),
                        absl::StrCat("network file ", read.status().message()));
  }
  const std::vector<NamedArray>& arrays = *read;
  auto need = [&](const char* name) -> absl::StatusOr<const NamedArray*> {
    const NamedArray* a = FindArray(arrays, name);
    if (a == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " is not a network file written by paragan_init (no '", name,
          "')"));
    }
    return a;
  };
  PG_ASSIGN_OR_RETURN(const NamedArray* format, need("init/format"));
  absl::StatusOr<std::vector<int64_t>> f = ToInt64Vector(*format);
  if (!f.ok() || f->size() != 1 || (*f)[0] != kFormat) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": unsupported network file format (this build reads ", kFormat,
        ")"));
  }
  NetworkInit init;
  PG_ASSIGN_OR_RETURN(const NamedArray* model, need("init/model"));
  init.model = model->bytes;
  PG_ASSIGN_OR_RETURN(const NamedArray* sig, need("init/signature"));
  init.signature = sig->bytes;
  PG_ASSIGN_OR_RETURN(const NamedArray* opt, need("init/optimizer"));
  absl::StatusOr<std::vector<float>> o = ToFloatVector(*opt);
  if (!o.ok() || o->size() != 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": init/optimizer must hold 8 float32 values"));
  }
  init.g_adam = {(*o)[0], (*o)[1], (*o)[2], (*o)[3]};
  init.d_adam = {(*o)[4], (*o)[5], (*o)[6], (*o)[7]};
  PG_RETURN_IF_ERROR(ValidAdam(path, "G", init.g_adam));
  PG_RETURN_IF_ERROR(ValidAdam(path, "D", init.d_adam));
  PG_ASSIGN_OR_RETURN(const NamedArray* steps, need("init/d_steps"));
  absl::StatusOr<std::vector<int64_t>> s = ToInt64Vector(*steps);
  if (!s.ok() || s->size() != 1 || (*s)[0] < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": init/d_steps must be one integer >= 1"));
  }
  init.d_steps_per_g_step = static_cast<int>((*s)[0]);
  // Optional: files written before the hint existed keep the old default.
  if (const NamedArray* lease = FindArray(arrays, "init/worker_lease_s")) {
    absl::StatusOr<std::vector<float>> l = ToFloatVector(*lease);
    if (!l.ok() || l->size() != 1 || !std::isfinite((*l)[0]) || (*l)[0] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path,
                       ": init/worker_lease_s must be one finite float32 >= 0 "
                       "(seconds; 0: never)"));
    }
    init.worker_lease_s = (*l)[0];
  }

  std::set<std::string> seen;
  for (const NamedArray& a : arrays) {
    if (absl::StartsWith(a.name, "init/")) continue;
    const bool g = absl::StartsWith(a.name, "G/");
    if (!g && !absl::StartsWith(a.name, "D/")) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": unexpected array '", a.name, "'"));
    }
    const std::string rest = a.name.substr(1);
    const bool param = absl::StartsWith(rest, kParam);
    if (!param && !absl::StartsWith(rest, kBuffer)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": array '", a.name, "' is neither a param nor a buffer"));
    }
    TableTensor t;
    t.spec.name = rest.substr(param ? sizeof(kParam) - 1 : sizeof(kBuffer) - 1);
    t.spec.shape = a.dims;
    t.spec.trainable = param;
    if (t.spec.name.empty() ||
        !seen.insert(a.name.substr(0, 2) + t.spec.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": empty or duplicate tensor name in '", a.name, "'"));
    }
    absl::StatusOr<std::vector<float>> values = ToFloatVector(a);
    if (!values.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor '", a.name, "': ", values.status().message()));
    }
    for (float v : *values) {
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": tensor '", a.name, "' has a NaN or Inf value"));
      }
    }
    t.values = std::move(*values);
    (g ? init.g : init.d).push_back(std::move(t));
  }
  if (init.g.empty() || init.d.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the file must hold both networks (G has ",
                     init.g.size(), " tensors, D ", init.d.size(), ")"));
  }
  return init;
}

}  // namespace paragan
