#include "dataloader/dispatch_policy.h"

#include <map>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace paragan {
namespace {

struct Registry {
  std::mutex mu;  // registration runs in static initializers, lookups later
  std::map<std::string, DispatchPolicyFactory, std::less<>> factories;
};

// Built on first use, so that registrations from any file's static
// initializers find it constructed.
Registry& GetRegistry() {
  static Registry* registry = new Registry;  // never destroyed
  return *registry;
}

bool WellFormed(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

absl::Status UnknownPolicyError(absl::string_view name) {
  const std::vector<std::string> names = DispatchPolicyNames();
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dispatch policy '", name, "'; known: ",
      names.empty() ? "(none linked in)" : absl::StrJoin(names, ", ")));
}

}  // namespace

bool RegisterDispatchPolicy(absl::string_view name,
                            DispatchPolicyFactory factory) {
  PG_CHECK(WellFormed(name)) << "dispatch policy name '" << name
                             << "': use lower case letters, digits and '_'";
  PG_CHECK(factory != nullptr) << "dispatch policy '" << name << "'";
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  const bool added =
      r.factories.emplace(std::string(name), std::move(factory)).second;
  PG_CHECK(added) << "dispatch policy '" << name << "' registered twice";
  return true;
}

std::vector<std::string> DispatchPolicyNames() {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> names;
  for (const auto& [name, factory] : r.factories) names.push_back(name);
  return names;  // std::map: sorted
}

absl::Status CheckDispatchPolicyName(absl::string_view name) {
  {
    Registry& r = GetRegistry();
    std::lock_guard<std::mutex> lock(r.mu);
    if (r.factories.find(name) != r.factories.end()) return absl::OkStatus();
  }
  return UnknownPolicyError(name);
}

absl::StatusOr<std::unique_ptr<DispatchPolicy>> CreateDispatchPolicy(
    absl::string_view name, const DispatchPolicyConfig& config) {
  DispatchPolicyFactory factory;
  {
    Registry& r = GetRegistry();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.factories.find(name);
    if (it != r.factories.end()) factory = it->second;
  }
  if (factory == nullptr) return UnknownPolicyError(name);
  std::unique_ptr<DispatchPolicy> policy = factory(config);
  // The name the service reports must be the one the user selected.
  if (policy == nullptr || policy->name() != name) {
    return absl::InternalError(absl::StrCat(
        "dispatch policy '", name, "' built ",
        policy == nullptr
            ? std::string("nothing")
            : absl::StrCat("a policy named '", policy->name(), "'")));
  }
  return policy;
}

}  // namespace paragan
