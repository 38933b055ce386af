#include "worker/engine/model_registry.h"

#include <algorithm>
#include <cctype>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "worker/engine/model_registration.h"

namespace paragan {
namespace {

// Reachable only through ModelRegistrar (before the first read) and the
// const accessors below (after it).
struct Registry {
  std::vector<std::unique_ptr<const ModelSpec>> specs;
  bool frozen = false;
};

Registry& GetRegistry() {
  // Never destroyed: specs are handed out as pointers that live forever.
  static Registry* const registry = new Registry;
  return *registry;
}

bool IsDigit(char c) { return std::isdigit(static_cast<unsigned char>(c)); }

// a < b with runs of digits compared as numbers, so help texts list
// biggan32, biggan64, biggan128 in that order.
bool NaturalLess(absl::string_view a, absl::string_view b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (IsDigit(a[i]) && IsDigit(b[j])) {
      size_t ie = i, je = j;
      while (ie < a.size() && IsDigit(a[ie])) ++ie;
      while (je < b.size() && IsDigit(b[je])) ++je;
      while (i + 1 < ie && a[i] == '0') ++i;  // leading zeros
      while (j + 1 < je && b[j] == '0') ++j;
      const absl::string_view na = a.substr(i, ie - i);
      const absl::string_view nb = b.substr(j, je - j);
      if (na.size() != nb.size()) return na.size() < nb.size();
      if (na != nb) return na < nb;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

// Ends registration: from here on the registry is only read.
const std::vector<const ModelSpec*>* Freeze() {
  Registry& r = GetRegistry();
  r.frozen = true;
  auto* sorted = new std::vector<const ModelSpec*>;
  for (const auto& spec : r.specs) sorted->push_back(spec.get());
  std::sort(sorted->begin(), sorted->end(),
            [](const ModelSpec* x, const ModelSpec* y) {
              return NaturalLess(x->name, y->name);
            });
  return sorted;
}

}  // namespace

ModelRegistrar::ModelRegistrar(ModelSpec spec) {
  Registry& r = GetRegistry();
  PG_CHECK(!r.frozen) << "model '" << spec.name
                      << "' registered after the model registry was read: "
                         "register with a namespace-scope ModelRegistrar";
  PG_CHECK(!spec.name.empty()) << "a model registered without a name";
  PG_CHECK(spec.make != nullptr)
      << "model '" << spec.name << "' has no factory";
  PG_CHECK(spec.worker_lease_s >= 0)
      << "model '" << spec.name << "': worker_lease_s " << spec.worker_lease_s;
  for (const auto& other : r.specs) {
    PG_CHECK(other->name != spec.name)
        << "model '" << spec.name << "' registered twice";
  }
  spec.config.name = spec.name;
  r.specs.push_back(std::make_unique<const ModelSpec>(std::move(spec)));
}

const std::vector<const ModelSpec*>& RegisteredModels() {
  // Thread-safe first use; registrars all ran before main.
  static const std::vector<const ModelSpec*>* const sorted = Freeze();
  return *sorted;
}

const ModelSpec* FindModelSpec(absl::string_view name) {
  for (const ModelSpec* spec : RegisteredModels()) {
    if (spec->name == name) return spec;
  }
  return nullptr;
}

absl::StatusOr<const ModelSpec*> GetModelSpec(absl::string_view name) {
  const ModelSpec* spec = FindModelSpec(name);
  if (spec == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown model '", name, "': ", ModelFlagHelp()));
  }
  return spec;
}

std::string RegisteredModelNames() {
  return absl::StrJoin(
      RegisteredModels(), ", ",
      [](std::string* out, const ModelSpec* spec) { out->append(spec->name); });
}

std::string ModelFlagHelp() {
  return absl::StrCat("one of: ", RegisteredModelNames());
}

std::string ModelDescriptions() {
  size_t width = 0;
  for (const ModelSpec* spec : RegisteredModels()) {
    width = std::max(width, spec->name.size());
  }
  std::string out;
  for (const ModelSpec* spec : RegisteredModels()) {
    absl::StrAppend(&out, "  ", spec->name,
                    std::string(width + 2 - spec->name.size(), ' '),
                    spec->description, "\n");
  }
  return out;
}

}  // namespace paragan
