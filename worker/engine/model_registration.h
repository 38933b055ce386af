#ifndef PARAGAN_WORKER_ENGINE_MODEL_REGISTRATION_H_
#define PARAGAN_WORKER_ENGINE_MODEL_REGISTRATION_H_

// For the model files of //worker/engine:model only (a private header of
// that library): each registers its models with one namespace-scope object,
//
//   const ModelRegistrar kRegisterDcgan32(Dcgan32Spec());
//
// The library is alwayslink, so every binary that links it runs these
// constructors before main. Registration order does not matter (the registry
// sorts by name), and it must be over before anything reads the registry:
// a registrar that runs later, a duplicate name or an incomplete spec stops
// the program at start-up (programming errors, not user input).

#include "worker/engine/model_registry.h"

namespace paragan {

class ModelRegistrar {
 public:
  explicit ModelRegistrar(ModelSpec spec);
  ModelRegistrar(const ModelRegistrar&) = delete;
  ModelRegistrar& operator=(const ModelRegistrar&) = delete;
};

}  // namespace paragan

#endif  // PARAGAN_WORKER_ENGINE_MODEL_REGISTRATION_H_
