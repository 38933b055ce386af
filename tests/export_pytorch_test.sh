#!/bin/bash
# paragan_export against the PyTorch reference: tiny checkpoints (a few
# paragan_train steps on synthetic data) of every model paragan_ref.py has a
# generator for, and the G_ema of a parameter server a worker trained, are
# exported to .safetensors; tests/pytorch/load_safetensors.py parses each by
# hand, loads it into paragan_ref's generator with load_state_dict(strict=True)
# and runs it in eval mode on fixed z (and labels); its float32 images must
# match paragan_sample --z's (unquantized) within ATOL. Also: the export of G
# itself (raw) differs from the EMA's by far more than ATOL (so a mixed-up
# tensor cannot pass), outputs are never overwritten without --overwrite, and
# unsupported models and missing checkpoints fail with the reason.
#   export_pytorch_test.sh <paragan_train> <paragan_export> <paragan_sample>
#       <paragan_init> <paragan_server> <paragan_worker> <load_safetensors.py>
set -u
TRAIN="$1"; EXPORT="$2"; SAMPLE="$3"; INIT="$4"; SERVER="$5"; WORKER="$6"
LOADER="$7"
PY=/usr/bin/python3
ATOL=1e-4
T="${TEST_TMPDIR:-$(mktemp -d)}/export_pytorch"
rm -rf "$T"; mkdir -p "$T"
SPID=
cleanup() { [ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
# run <log> <cmd...>: runs it, shows the log and fails when it fails.
run() {
  local log=$1; shift
  "$@" >"$log" 2>&1
  local rc=$?
  [ $rc = 0 ] || { cat "$log"; fail "$(basename "$1") exited $rc"; }
  cat "$log"
}

"$PY" -c 'import numpy, torch' 2>"$T/py.err" ||
  { cat "$T/py.err"; fail "$PY needs numpy and torch (Debian's python3-torch: deploy/setup.sh installs it)"; }

# Fixed inputs: z for z_dim 128 (dcgan32, biggan32) and 120 (biggan64/128).
"$PY" - "$T" <<'PY' || fail "cannot write the inputs"
import sys
import numpy as np
r = np.random.RandomState(7)
for d in (128, 120):
    np.save(f"{sys.argv[1]}/z{d}.npy", r.randn(12, d).astype(np.float32))
np.save(f"{sys.argv[1]}/labels.npy", (np.arange(12) * 7 % 10).astype(np.int64))
PY

# train <name> <paragan_train flags...>: a tiny checkpoint at $T/<name>.
train() {
  local name=$1; shift
  run "$T/$name.train.log" "$TRAIN" --dataset=synthetic --synthetic_size=32 \
    --sample_every=0 --checkpoint_every=0 --num_samples=4 --log_every=1 \
    --threads=2 --cpu_layout=blocked --out_dir="$T/$name" "$@" >/dev/null
}

# compare <name> <file.safetensors> <checkpoint> <generator> <z_dim> <cond>
#   [expect]: PyTorch's images of the export against paragan_sample's of the
#   checkpoint; expect "differ" wants them to differ by more than 1e-3.
compare() {
  local name=$1 st=$2 ckpt=$3 gen=$4 zd=$5 cond=$6 expect=${7:-match}
  local labels=()
  [ "$cond" = 1 ] && labels=(--labels="$T/labels.npy")
  run "$T/$name.sample.log" "$SAMPLE" --checkpoint="$ckpt" --z="$T/z$zd.npy" \
    "${labels[@]}" --generator="$gen" --out="$T/$name.cpp"
  local pylabels=()
  [ "$cond" = 1 ] && pylabels=(--labels "$T/labels.npy")
  if [ "$expect" = differ ]; then
    "$PY" "$LOADER" --weights "$st" --z "$T/z$zd.npy" "${pylabels[@]}" \
      --out "$T/$name.pt.npy" --expect "$T/$name.cpp.npy" --atol 1e-3 \
      >"$T/$name.py.log" 2>&1 &&
      { cat "$T/$name.py.log"; fail "$name: the EMA and raw generators give the same images"; }
    grep -q "^max abs diff" "$T/$name.py.log" ||
      { cat "$T/$name.py.log"; fail "$name: no comparison"; }
    echo "$name (must differ): $(grep '^max abs diff' "$T/$name.py.log")"
    return
  fi
  "$PY" "$LOADER" --weights "$st" --z "$T/z$zd.npy" "${pylabels[@]}" \
    --out "$T/$name.pt.npy" --expect "$T/$name.cpp.npy" --atol "$ATOL" \
    >"$T/$name.py.log" 2>&1 ||
    { cat "$T/$name.py.log"; fail "$name: PyTorch's images differ from paragan_sample's"; }
  cat "$T/$name.py.log"
  echo "$name: $(grep '^max abs diff' "$T/$name.py.log")" >>"$T/summary"
}

# export <name> <generator> <source flags...>: $T/<name>.safetensors
export_g() {
  local name=$1 gen=$2; shift 2
  run "$T/$name.export.log" "$EXPORT" --generator="$gen" \
    --out="$T/$name.safetensors" "$@"
}

# ---- checkpoints of every supported model
train dcgan32 --model=dcgan32 --batch_size=8 --steps=3
export_g dcgan32_ema ema --checkpoint="$T/dcgan32/checkpoint.pgt"
export_g dcgan32_raw raw --checkpoint="$T/dcgan32/checkpoint.pgt"
compare dcgan32_ema "$T/dcgan32_ema.safetensors" "$T/dcgan32/checkpoint.pgt" ema 128 0
compare dcgan32_raw "$T/dcgan32_raw.safetensors" "$T/dcgan32/checkpoint.pgt" raw 128 0
compare dcgan32_mixed "$T/dcgan32_raw.safetensors" "$T/dcgan32/checkpoint.pgt" ema 128 0 differ

train biggan32 --model=biggan32 --width=16 --channels=3 --batch_size=4 --steps=2
export_g biggan32_ema ema --checkpoint="$T/biggan32/checkpoint.pgt"
export_g biggan32_raw raw --checkpoint="$T/biggan32/checkpoint.pgt"
compare biggan32_ema "$T/biggan32_ema.safetensors" "$T/biggan32/checkpoint.pgt" ema 128 1
compare biggan32_raw "$T/biggan32_raw.safetensors" "$T/biggan32/checkpoint.pgt" raw 128 1
compare biggan32_mixed "$T/biggan32_ema.safetensors" "$T/biggan32/checkpoint.pgt" raw 128 1 differ

train biggan32_noattn --model=biggan32 --width=8 --attention=false --batch_size=4 --steps=2
export_g biggan32_noattn ema --checkpoint="$T/biggan32_noattn/checkpoint.pgt"
compare biggan32_noattn "$T/biggan32_noattn.safetensors" "$T/biggan32_noattn/checkpoint.pgt" ema 128 1

for m in biggan64 biggan128; do
  train $m --model=$m --width=8 --channels=3 --batch_size=2 --steps=1
  export_g $m ema --checkpoint="$T/$m/checkpoint.pgt"
  compare $m "$T/$m.safetensors" "$T/$m/checkpoint.pgt" ema 120 1
done

# ---- from a parameter server: a worker trains 3 steps, then G_ema is
# exported (--ps) and compared with paragan_sample --ps's checkpoint.pgt.
run "$T/init.log" "$INIT" --model=dcgan32 --seed=5 --out="$T/init.pgt"
"$SERVER" --port=0 --bind_address=127.0.0.1 --shard_id=0 --num_shards=1 \
  --init="$T/init.pgt" --port_file="$T/port0" --ema_decay=0.999 \
  >"$T/server.log" 2>&1 &
SPID=$!
for i in $(seq 300); do [ -s "$T/port0" ] && break; sleep 0.1; done
[ -s "$T/port0" ] || { cat "$T/server.log"; fail "paragan_server did not start"; }
PS="127.0.0.1:$(cat "$T/port0")"
run "$T/worker.log" "$WORKER" --worker_id=w0 --ps="$PS" --dataset=synthetic \
  --synthetic_size=32 --batch_size=8 --threads=2 --steps=3 --log_every=1 \
  --cpu_layout=blocked >/dev/null
export_g ps_ema ema --ps="$PS" --model=dcgan32
grep -q "ema generator at step 3, from ps" "$T/ps_ema.export.log" ||
  fail "the --ps export does not report G step 3"
mkdir -p "$T/ps_out"
run "$T/ps_sample.log" "$SAMPLE" --ps="$PS" --model=dcgan32 --out_dir="$T/ps_out" --num_samples=4
compare ps_ema "$T/ps_ema.safetensors" "$T/ps_out/checkpoint.pgt" ema 128 0
# The wrong --model for the shards' tables is refused, naming a tensor.
"$EXPORT" --ps="$PS" --model=biggan32 --out="$T/wrong.safetensors" >"$T/wrong.log" 2>&1 &&
  fail "--ps with the wrong --model succeeded"
grep -q "no shard returned tensor 'g.shared.weight'" "$T/wrong.log" ||
  { cat "$T/wrong.log"; fail "unclear error for the wrong --model"; }
kill "$SPID"; wait "$SPID" 2>/dev/null; SPID=

# ---- refusals
# An existing output is kept without --overwrite, replaced with it.
cp "$T/dcgan32_ema.safetensors" "$T/before"
"$EXPORT" --checkpoint="$T/biggan32/checkpoint.pgt" --out="$T/dcgan32_ema.safetensors" \
  >"$T/exists.log" 2>&1 && fail "an existing output was overwritten"
grep -q "exists (pass --overwrite" "$T/exists.log" || { cat "$T/exists.log"; fail "unclear error for an existing output"; }
cmp -s "$T/before" "$T/dcgan32_ema.safetensors" || fail "the existing output changed"
run "$T/overwrite.log" "$EXPORT" --checkpoint="$T/biggan32/checkpoint.pgt" \
  --out="$T/dcgan32_ema.safetensors" --overwrite
cmp -s "$T/before" "$T/dcgan32_ema.safetensors" && fail "--overwrite did not replace the output"
ls "$T" | grep -q 'partial\|\.tmp\.' && fail "temporary files left behind: $(ls "$T" | grep 'partial\|\.tmp\.')"
# No reference generator for a 3-channel DCGAN.
train dcgan32_rgb --model=dcgan32 --channels=3 --batch_size=4 --steps=1
"$EXPORT" --checkpoint="$T/dcgan32_rgb/checkpoint.pgt" --out="$T/rgb.safetensors" \
  >"$T/rgb.log" 2>&1 && fail "a 3-channel dcgan32 was exported"
grep -q "DCGANGenerator writes 1 channel; supported: dcgan32" "$T/rgb.log" ||
  { cat "$T/rgb.log"; fail "unclear error for an unsupported model"; }
[ -e "$T/rgb.safetensors" ] && fail "an unsupported model left an output"
"$EXPORT" --checkpoint="$T/none.pgt" --out="$T/none.safetensors" >"$T/none.log" 2>&1 &&
  fail "a missing checkpoint was exported"
grep -q "no checkpoint at $T/none.pgt" "$T/none.log" || { cat "$T/none.log"; fail "unclear error for a missing checkpoint"; }

echo "== PyTorch vs paragan_sample (max abs diff, atol $ATOL)"
cat "$T/summary"
echo PASS
