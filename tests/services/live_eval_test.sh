#!/usr/bin/env bash
# Real processes: paragan_local on Fashion-MNIST with the live evaluator for
# about a minute (2 shards, the data service, 2 workers, paragan_eval --ps
# --every_s beside them), then checks what a user sees: the reference
# computed before training (eval-ref), rows in fid.csv at increasing G steps
# and a final full-speed row at the final step with the final sample count,
# fid.png, FID in the progress line and the summary (text and JSON). Then a
# broken reference file is refused before any worker starts.
#   args: paragan_local paragan_server paragan_data paragan_worker paragan_sample paragan_init paragan_eval
set -euo pipefail
LOCAL=$1
source "$(dirname "$0")/bin_dir.sh"
BIN=$(make_bin_dir "${@:2:6}")
DATA=${PARAGAN_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: no Fashion-MNIST at $DATA (apt-get install dataset-fashion-mnist)"; exit 0
fi
T=${TEST_TMPDIR:-$(mktemp -d)}
OUT=$T/run
REF=$T/ref/fmnist-cnn.pgt
fail() { echo "FAIL: $*"; for f in "$OUT"/summary.txt "$OUT"/fid.csv "$OUT"/logs/eval*.log; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done; exit 1; }
mkdir -p "$T/ref"
# A small reference (2000 train images) and normal priority keep the test
# short and its rounds frequent on a busy test machine.
"$LOCAL" --bin_dir="$BIN" --data_dir="$DATA" --batch_size=16 --threads_per_worker=1 \
  --minutes=1 --steps=0 --progress_s=4 --num_samples=64 --out_dir="$OUT" \
  --eval_every_s=8 --eval_samples=200 --eval_final_samples=300 --eval_reference="$REF" \
  --eval_flags="--reference_images=2000 --priority=normal --kid_subsets=10" \
  > "$OUT.stdout" 2>&1 || { cat "$OUT.stdout"; fail "paragan_local exited"; }
cat "$OUT.stdout"
grep -q "eval-ref  *pid [0-9]* *exit 0" "$OUT/summary.txt" || fail "no eval-ref process in the summary"
grep -q "computed from 2000 Fashion-MNIST train images" "$OUT/logs/eval-ref.log" || fail "eval-ref did not compute the reference"
[ -s "$REF" ] || fail "no reference file at $REF"
grep -Eq '\| FID\(fmnist-cnn\) [0-9.]+ @G [0-9]+$' "$OUT.stdout" || fail "no FID in the progress line"
head -1 "$OUT/fid.csv" | grep -q '^wall_s,unix_s,g_step,network,num_samples,fid,' || fail "fid.csv header"
rows=$(( $(wc -l < "$OUT/fid.csv") - 1 ))
[ "$rows" -ge 3 ] || fail "only $rows rows in fid.csv (want live rounds and the final one)"
# Live rows: 200 samples, G steps increasing, FIDs finite and positive.
awk -F, 'NR > 1 && NR < '"$((rows + 1))"' {
  if ($5 != 200 || $6 !~ /^[0-9.]+$/ || $6 <= 0) { print "bad live row: " $0; exit 1 }
  if (NR > 2 && $3 < prev) { print "G step went back: " $0; exit 1 }
  prev = $3 }' "$OUT/fid.csv" || fail "live rows"
final_row=$(tail -1 "$OUT/fid.csv")
[ "$(echo "$final_row" | cut -d, -f5)" = 300 ] || fail "final row has not 300 samples: $final_row"
g_final=$(sed -n 's/.*"g_steps": \([0-9]*\).*/\1/p' "$OUT/summary.json")
[ "$(echo "$final_row" | cut -d, -f3)" = "$g_final" ] || fail "final row's G step $(echo "$final_row" | cut -d, -f3) != the run's $g_final"
grep -Eq "^final FID\(fmnist-cnn\) [0-9.]+ at G step $g_final \(300 samples\)" "$OUT/summary.txt" || fail "no final FID in summary.txt"
grep -q '"final_fid_samples": 300' "$OUT/summary.json" || fail "no final FID in summary.json"
grep -q '"eval_rounds": [1-9]' "$OUT/summary.json" || fail "no live rounds in summary.json"
[ "$(head -c 8 "$OUT/fid.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "fid.png is not a PNG"
grep -q "$OUT/fid.png" "$OUT/summary.txt" || fail "fid.png not among the outputs"
echo "ok: $rows rows, final at G $g_final"

# A broken reference file: refused before training, and left as it was.
BAD=$T/bad
printf 'not a tensor file' > "$T/broken.pgt"
if "$LOCAL" --bin_dir="$BIN" --data_dir="$DATA" --batch_size=16 --minutes=1 --steps=0 \
  --out_dir="$BAD" --eval_every_s=8 --eval_reference="$T/broken.pgt" > "$BAD.stdout" 2>&1; then
  cat "$BAD.stdout"; OUT=$BAD; fail "the run started with a broken reference"
fi
grep -q "eval-ref" "$BAD.stdout" || { cat "$BAD.stdout"; OUT=$BAD; fail "the error does not name eval-ref"; }
grep -q "broken.pgt" "$BAD.stdout" || { cat "$BAD.stdout"; OUT=$BAD; fail "the error does not name the file"; }
[ ! -e "$BAD/logs/w0.log" ] || { OUT=$BAD; fail "a worker started despite the broken reference"; }
[ "$(cat "$T/broken.pgt")" = "not a tensor file" ] || fail "the broken reference was overwritten"
echo "ok: a broken reference is refused before training and left as it was"
echo PASS
