// paragan_init: writes a training job's initial networks (G and D: layout,
// initial values, the model's default optimizer settings and worker-lease
// hint) into the one file every parameter-server shard starts from (--init).
//
//   paragan_init --model=dcgan32 --seed=0 --out=/tmp/ps/init.pgt

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/flags_usage.h"
#include "worker/engine/model_registry.h"
#include "worker/train/init_networks.h"

// Help texts list the registered models (worker/engine/model_registry.h).
ABSL_FLAG(std::string, model, "dcgan32",
          absl::StrCat("The model, ", paragan::ModelFlagHelp(), "."));
ABSL_FLAG(int, image_channels, 1, "Image channels of the model.");
ABSL_FLAG(int, num_classes, 10, "Classes (conditional models).");
ABSL_FLAG(uint64_t, seed, 0,
          "Seed of the initial weights (paragan_train's --seed gives the "
          "same networks).");
ABSL_FLAG(std::string, out, "", "Required: the file to write.");

int main(int argc, char** argv) {
  paragan::SetUsage(
      absl::StrCat(
          "Writes the initial networks the parameter servers start from. "
          "Example:\n  paragan_init --model=dcgan32 --seed=0 "
          "--out=/tmp/ps/init.pgt\nModels:\n",
          paragan::ModelDescriptions()),
      "worker/train/init_main.cc");
  absl::ParseCommandLine(argc, argv);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "paragan_init: --out is required\n");
    return 2;
  }
  if (absl::Status st =
          paragan::GetModelSpec(absl::GetFlag(FLAGS_model)).status();
      !st.ok()) {
    std::fprintf(stderr, "paragan_init: --model: %s\n",
                 std::string(st.message()).c_str());
    return 2;
  }
  paragan::TrainerConfig config =
      paragan::DefaultTrainerConfig(absl::GetFlag(FLAGS_model));
  config.model.image_channels = absl::GetFlag(FLAGS_image_channels);
  config.model.num_classes = absl::GetFlag(FLAGS_num_classes);
  config.seed = absl::GetFlag(FLAGS_seed);
  absl::StatusOr<paragan::NetworkInit> init = paragan::MakeNetworkInit(config);
  if (!init.ok()) {
    std::fprintf(stderr, "paragan_init: %s\n",
                 std::string(init.status().message()).c_str());
    return 2;
  }
  if (absl::Status st = paragan::WriteNetworkInit(out, *init); !st.ok()) {
    std::fprintf(stderr, "paragan_init: %s\n",
                 std::string(st.message()).c_str());
    return 1;
  }
  std::printf("paragan_init: wrote %s (%s, seed %llu: G %zu tensors, D %zu)\n",
              out.c_str(), init->signature.c_str(),
              static_cast<unsigned long long>(config.seed), init->g.size(),
              init->d.size());
  return 0;
}
