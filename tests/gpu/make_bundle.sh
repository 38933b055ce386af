#!/usr/bin/env bash
# Builds the GPU test and benchmark binaries here (--config=cuda) and gathers
# them with the shared libraries a GPU machine may lack into gpu_bundle/
# (git-ignored), for tests/gpu/gpu_check.sh to run there without Bazel.
#
#   bash tests/gpu/make_bundle.sh   # then carry gpu_bundle.tgz to the GPU host
#                                   # and unpack it in the repository root
#
# Left out on purpose: the C runtime (the host's is newer and compatible), and
# cuBLAS / cuDNN (hundreds of MB; gpu_check.sh finds the host's own).
set -euo pipefail
cd "$(dirname "$0")/../.."
targets=(//worker/engine:cuda_backend_test //worker/train:gpu_training_test
         //worker/train:paragan_bench)
# The services, for a distributed run with a GPU worker (paragan_local finds
# them under svc/ by their package paths).
services=(server/paragan_server tests/bench/paragan_ps_bench dataloader/paragan_data
          worker/distributed/paragan_worker worker/train/paragan_init
          worker/train/paragan_sample deploy/local/paragan_local)
for s in "${services[@]}"; do targets+=("//${s%/*}:${s##*/}"); done
bazel build --config=cuda "${targets[@]}"
bin=$(bazel info --config=cuda bazel-bin 2>/dev/null)
rm -rf gpu_bundle
mkdir -p gpu_bundle/bin gpu_bundle/lib
cp "$bin/worker/engine/cuda_backend_test" "$bin/worker/train/gpu_training_test" \
   "$bin/worker/train/paragan_bench" gpu_bundle/bin/
for s in "${services[@]}"; do
  mkdir -p "gpu_bundle/svc/${s%/*}"
  cp "$bin/$s" "gpu_bundle/svc/$s"
done
chmod -R u+w gpu_bundle
skip='^(libc|libm|libpthread|libdl|librt|ld-linux-x86-64|libstdc\+\+|libgcc_s|libcuda|libcublas|libcublasLt|libcudnn.*)\.so'
for b in gpu_bundle/bin/* $(find gpu_bundle/svc -type f); do
  ldd "$b" | awk '/=> \//{print $1, $3}'
done | sort -u | while read -r name path; do
  if [[ "$name" =~ $skip ]]; then continue; fi
  cp -L "$path" "gpu_bundle/lib/$name"
done
# Compressed for the trip (the device tool carries at most 64 MiB).
tar czf gpu_bundle.tgz gpu_bundle
du -sh gpu_bundle gpu_bundle.tgz
ls gpu_bundle/lib
