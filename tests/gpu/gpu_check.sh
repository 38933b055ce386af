#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU (CUDA 13 driver, cuDNN 9,
# cuBLAS and PyTorch installed; no Bazel, no network), runs the GPU tests
# from binaries built elsewhere and prints one table of training-step times:
# our engine (canonical fp32, TF32, autotuned layout and precision) against
# PyTorch on the same GPU, for DCGAN-32 and BigGAN at 32, 64 and 128 pixels.
#
#   bash tests/gpu/make_bundle.sh           # on the build machine
#   bash tests/gpu/gpu_check.sh [out_dir]   # on the GPU machine, repo root
#
# Through the device tool, leave out_dir (it defaults to $OUT): the logs are
# written there as the script goes, so a run cut off by its time limit still
# brings back what it did.
#
# Env: BUNDLE (default gpu_bundle), PYTHON (python3), BATCH (64), ITERS (10),
# WIDTH (BigGAN ch, 64), MODELS (space-separated, in run order), QUICK=1
# (DCGAN-32 and BigGAN-32 only), DEADLINE (seconds: start no benchmark after
# this much wall time, default 480, so the script ends well within 10 min),
# BENCH_TIMEOUT (seconds per benchmark process, 240), SKIP_TESTS=1, PS_BENCH=0,
# SVC_MODELS / SVC_MINUTES / SVC_EXTRA (section 3).
set -uo pipefail
cd "$(dirname "$0")/../.."
[ -d "${BUNDLE:-gpu_bundle}" ] || [ ! -f gpu_bundle.tgz ] || tar xzf gpu_bundle.tgz
out=${1:-${OUT:-/tmp/paragan_gpu_check}}
mkdir -p "$out"
bundle=${BUNDLE:-gpu_bundle}
py=${PYTHON:-python3}
batch=${BATCH:-64}
iters=${ITERS:-10}
width=${WIDTH:-64}
start=$(date +%s)

# cuDNN and cuBLAS: the host's own (system CUDA or PyTorch's wheels).
lib_dir() {
  local name=$1 d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
           /usr/lib/x86_64-linux-gnu; do
    [ -e "$d/$name" ] && { echo "$d"; return; }
  done
  find /usr /opt -name "$name" 2>/dev/null | head -1 | xargs -r dirname
}
cudnn=$(lib_dir libcudnn.so.9)
cublas=$(lib_dir libcublas.so.13)
# Only for our binaries: PyTorch brings its own cuDNN, and another cuDNN
# earlier on its path fails its version check.
ours_ld="$PWD/$bundle/lib:${cudnn}:${cublas}:${LD_LIBRARY_PATH:-}"
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
echo "GPU: ${gpu:-none found}"
echo "cuDNN from: ${cudnn:-NOT FOUND}  cuBLAS from: ${cublas:-NOT FOUND}"
echo "PyTorch: $($py -c 'import torch; print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version())' 2>&1)"
date -u +"date: %Y-%m-%d %H:%M UTC"

deadline=${DEADLINE:-480}
late() { [ $(( $(date +%s) - start )) -ge "$deadline" ]; }

# 1. Tests.
declare -A test_rc
tests=(cuda_backend_test gpu_training_test)
[ "${SKIP_TESTS:-0}" = 1 ] && tests=()
for t in "${tests[@]}"; do
  LD_LIBRARY_PATH="$ours_ld" timeout 240 "$bundle/bin/$t" --gtest_brief=1 >"$out/$t.log" 2>&1
  test_rc[$t]=$?
  echo "== $t: exit ${test_rc[$t]} ($(grep -cE '^\[  FAILED  \]' "$out/$t.log") failed lines)"
  grep -E '^\[  (FAILED|PASSED|SKIPPED) |Failure|error|Expected|Which is|check failed' "$out/$t.log" | head -40
done

# 2. Parameter-server push + pull bandwidth on this host's loopback (CPU
# only; the host's cores give servers, client and Adam threads their own).
declare -A ps_ratio
if [ -x "$bundle/svc/tests/bench/paragan_ps_bench" ] && [ "${PS_BENCH:-1}" = 1 ]; then
  for shards in 1 2; do
    log="$out/ps_bench_$shards.log"
    LD_LIBRARY_PATH="$ours_ld" timeout 120 "$bundle/svc/tests/bench/paragan_ps_bench" --model=biggan32 --iters=10 \
      --repeats=3 --threads=4 --shards="$shards" >"$log" 2>&1
    ps_ratio[$shards]=$(grep '^median' "$log")
    echo "== ps_bench biggan32, $shards shard(s): ${ps_ratio[$shards]:-FAILED}"
  done
fi

# 3. The services with a GPU worker: 2 shards + data service (synthetic data)
# + 1 worker on --device=cuda, through paragan_local (SVC_MODELS, SVC_MINUTES;
# SVC_EXTRA: flags for every service, e.g. --metrics_port=-1).
svc="$bundle/svc"
declare -A svc_rate
if [ -x "$svc/deploy/local/paragan_local" ]; then
  read -r -a svc_models <<<"${SVC_MODELS:-dcgan32 biggan32}"
  for m in "${svc_models[@]}"; do
    late && { echo "deadline reached: skipping services $m"; continue; }
    ch=3; [ "$m" = dcgan32 ] && ch=1
    log="$out/svc_$m.log"
    LD_LIBRARY_PATH="$ours_ld" timeout 200 "$svc/deploy/local/paragan_local" \
      --bin_dir="$PWD/$svc" --model="$m" --num_workers=1 --num_shards=2 \
      --dataset=synthetic --data_flags="--channels=$ch --resolution=32 ${SVC_EXTRA:-}" \
      --ps_flags="${SVC_EXTRA:-}" \
      --worker_flags="--device=cuda --gpu_precision=${SVC_PRECISION:-auto} --log_every=50 ${SVC_EXTRA:-}" \
      --minutes="${SVC_MINUTES:-1}" --steps=100000000 --num_samples=64 \
      --out_dir="$out/svc_$m" >"$log" 2>&1
    echo "== services $m, 1 GPU worker: exit $?"
    grep -E 'img/s|error|Error|died|FAIL' "$log" | tail -4
    grep -hE 'time: wall|autotune|error' "$out/svc_$m/logs/w0.log" 2>/dev/null | tail -3
    svc_rate[$m]=$(grep -oE '[0-9.]+ img/s' "$log" | tail -1)
  done
fi

# 4. Step times (ms).
read -r -a models <<<"${MODELS:-dcgan32 biggan32 biggan64 biggan128}"
[ "${QUICK:-0}" = 1 ] && models=(dcgan32 biggan32)
ours=("nchw fp32" "auto tf32" "auto auto")
theirs=(fp32 tf32 amp-bf16)
declare -A ms
ms_of() { sed -n 's/.*ms_per_step=\([0-9.]*\).*/\1/p' | tail -1; }
for m in "${models[@]}"; do
  ch=3; [ "$m" = dcgan32 ] && ch=1
  for cfg in "${ours[@]}"; do
    late && { echo "deadline reached: skipping $m $cfg"; continue; }
    set -- $cfg
    log="$out/bench_${m}_$1_$2.log"
    LD_LIBRARY_PATH="$ours_ld" timeout "${BENCH_TIMEOUT:-240}" "$bundle/bin/paragan_bench" --device=cuda --model="$m" \
      --gpu_layout="$1" --gpu_precision="$2" --batch="$batch" --width="$width" \
      --channels="$ch" --warmup=3 --iters="$iters" --log_autotune >"$log" 2>&1
    ms[$m,ours,$1/$2]=$(ms_of <"$log")
    echo "$m ours $1/$2: ${ms[$m,ours,$1/$2]:-FAILED} ms  $(grep -c '^autotune gpu' "$log") autotune lines"
  done
  for p in "${theirs[@]}"; do
    late && { echo "deadline reached: skipping $m torch $p"; continue; }
    log="$out/torch_${m}_$p.log"
    timeout "${BENCH_TIMEOUT:-240}" "$py" tests/pytorch/bench_reference.py --device=cuda --model="$m" \
      --precision="$p" --batch="$batch" --biggan-ch="$width" --channels="$ch" \
      --warmup=3 --iters="$iters" >"$log" 2>&1
    ms[$m,torch,$p]=$(ms_of <"$log")
    echo "$m torch $p: ${ms[$m,torch,$p]:-FAILED} ms"
  done
done

# 5. The table.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else printf "-" }'; }
{
  echo
  echo "GPU: ${gpu:-unknown}; batch $batch, BigGAN ch $width, $iters timed steps after 3 warm-up (autotune) steps; ms per step (1 D step + 1 G step)"
  fmt="| %-9s | %9s | %9s | %9s | %10s | %10s | %10s | %11s | %13s | %13s |\n"
  printf "$fmt" model "ours fp32" "ours tf32" "ours auto" "torch fp32" "torch tf32" \
    "torch bf16" "auto vs fp32" "best vs best" "fp32 vs fp32"
  printf "$fmt" "---" "---" "---" "---" "---" "---" "---" "---" "---" "---"
  for m in "${models[@]}"; do
    a=${ms[$m,ours,nchw/fp32]:-}; b=${ms[$m,ours,auto/tf32]:-}; c=${ms[$m,ours,auto/auto]:-}
    x=${ms[$m,torch,fp32]:-}; y=${ms[$m,torch,tf32]:-}; z=${ms[$m,torch,amp-bf16]:-}
    best_ours=$(printf "%s\n" $b $c | sort -g | head -1)
    best_torch=$(printf "%s\n" $x $y $z | sort -g | head -1)
    printf "$fmt" "$m" "${a:--}" "${b:--}" "${c:--}" "${x:--}" "${y:--}" "${z:--}" \
      "$(ratio "$a" "$best_ours")x" "$(ratio "$best_torch" "$best_ours")x" \
      "$(ratio "$x" "$a")x"
  done
  echo "auto vs fp32 = our canonical fp32 / our best; best vs best = PyTorch's best / ours;"
  echo "fp32 vs fp32 = PyTorch fp32 / ours fp32 (> 1: we are faster)"
  for k in "${!ps_ratio[@]}"; do echo "ps_bench, $k shard(s): ${ps_ratio[$k]}"; done
  for m in "${!svc_rate[@]}"; do echo "services, 1 GPU worker, $m: ${svc_rate[$m]}"; done
  echo "tests: cuda_backend_test exit ${test_rc[cuda_backend_test]:-not run}, gpu_training_test exit ${test_rc[gpu_training_test]:-not run}"
  echo "wall time: $(( $(date +%s) - start )) s"
} | tee "$out/table.md"
