#ifndef PARAGAN_WORKER_ENGINE_LOSSES_H_
#define PARAGAN_WORKER_ENGINE_LOSSES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace paragan {

// GAN objectives on discriminator logits. Logits are a handful of floats per
// batch, so the losses run on the host whatever the backend.
enum class GanLoss { kHinge, kNonSaturating };

absl::StatusOr<GanLoss> ParseGanLoss(const std::string& name);
std::string GanLossName(GanLoss loss);

// D: hinge mean(relu(1 - real)) + mean(relu(1 + fake)); non-saturating
// mean(softplus(-real)) + mean(softplus(fake)). Writes dLoss/dlogits.
double DiscriminatorLoss(GanLoss loss, const std::vector<float>& real,
                         const std::vector<float>& fake,
                         std::vector<float>* dreal, std::vector<float>* dfake);
// G: hinge -mean(fake); non-saturating mean(softplus(-fake)).
double GeneratorLoss(GanLoss loss, const std::vector<float>& fake,
                     std::vector<float>* dfake);

}  // namespace paragan

#endif  // PARAGAN_WORKER_ENGINE_LOSSES_H_
