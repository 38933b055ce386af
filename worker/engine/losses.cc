#include "worker/engine/losses.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace paragan {
namespace {

double Softplus(double x) {
  return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x)));
}
double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

absl::StatusOr<GanLoss> ParseGanLoss(const std::string& name) {
  if (name == "hinge") return GanLoss::kHinge;
  if (name == "ns" || name == "non_saturating") return GanLoss::kNonSaturating;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown loss '", name, "': expected hinge or ns"));
}

std::string GanLossName(GanLoss loss) {
  return loss == GanLoss::kHinge ? "hinge" : "ns";
}

double DiscriminatorLoss(GanLoss loss, const std::vector<float>& real,
                         const std::vector<float>& fake,
                         std::vector<float>* dreal, std::vector<float>* dfake) {
  dreal->assign(real.size(), 0.0f);
  dfake->assign(fake.size(), 0.0f);
  const double nr = static_cast<double>(real.size());
  const double nf = static_cast<double>(fake.size());
  double total = 0;
  for (size_t i = 0; i < real.size(); ++i) {
    if (loss == GanLoss::kHinge) {
      const double m = 1.0 - real[i];
      total += std::max(m, 0.0) / nr;
      (*dreal)[i] = m > 0 ? static_cast<float>(-1.0 / nr) : 0.0f;
    } else {
      total += Softplus(-real[i]) / nr;
      (*dreal)[i] = static_cast<float>(-Sigmoid(-real[i]) / nr);
    }
  }
  for (size_t i = 0; i < fake.size(); ++i) {
    if (loss == GanLoss::kHinge) {
      const double m = 1.0 + fake[i];
      total += std::max(m, 0.0) / nf;
      (*dfake)[i] = m > 0 ? static_cast<float>(1.0 / nf) : 0.0f;
    } else {
      total += Softplus(fake[i]) / nf;
      (*dfake)[i] = static_cast<float>(Sigmoid(fake[i]) / nf);
    }
  }
  return total;
}

double GeneratorLoss(GanLoss loss, const std::vector<float>& fake,
                     std::vector<float>* dfake) {
  dfake->assign(fake.size(), 0.0f);
  const double n = static_cast<double>(fake.size());
  double total = 0;
  for (size_t i = 0; i < fake.size(); ++i) {
    if (loss == GanLoss::kHinge) {
      total -= fake[i] / n;
      (*dfake)[i] = static_cast<float>(-1.0 / n);
    } else {
      total += Softplus(-fake[i]) / n;
      (*dfake)[i] = static_cast<float>(-Sigmoid(-fake[i]) / n);
    }
  }
  return total;
}

}  // namespace paragan
