#!/usr/bin/env bash
# Real processes: ParaGAN's decoupled schedule (paragan_local
# --schedule=decoupled). 1 G worker and 1 D worker train DCGAN-32 on
# Fashion-MNIST (synthetic data where the dataset is missing) for 150 G
# steps: the losses move as a working GAN's do, the exported samples are
# diverse, the D:G update ratio holds and no D step trains on a sample older
# than --max_sample_age. Then two short runs each kill one worker of a role
# that has two: training goes on with the other.
#   args: paragan_local paragan_server paragan_data paragan_worker paragan_sample paragan_init
set -euo pipefail
LOCAL=$1; SERVER=$2; DATA=$3; WORKER=$4; SAMPLE=$5; INIT=$6
BIN=$(mktemp -d)
mkdir -p "$BIN/server" "$BIN/dataloader" "$BIN/worker/distributed" "$BIN/worker/train"
ln -s "$(readlink -f "$SERVER")" "$BIN/server/paragan_server"
ln -s "$(readlink -f "$DATA")" "$BIN/dataloader/paragan_data"
ln -s "$(readlink -f "$WORKER")" "$BIN/worker/distributed/paragan_worker"
ln -s "$(readlink -f "$INIT")" "$BIN/worker/train/paragan_init"
ln -s "$(readlink -f "$SAMPLE")" "$BIN/worker/train/paragan_sample"
FMNIST=/usr/share/datasets/fashion-mnist
if [ -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  DATASET=(--dataset=fashion_mnist --data_dir="$FMNIST")
else
  echo "note: no Fashion-MNIST at $FMNIST: synthetic data"
  DATASET=(--dataset=synthetic --data_dir=)
fi
TMP=${TEST_TMPDIR:-$(mktemp -d)}
OUT=$TMP/decoupled
fail() { echo "FAIL: $*"; for f in "$OUT"/summary.txt "$OUT"/logs/*.log; do [ -f "$f" ] && { echo "== $f"; tail -15 "$f"; }; done; exit 1; }
COMMON=(--bin_dir="$BIN" "${DATASET[@]}" --schedule=decoupled --eval_every_s=0
        --threads_per_worker=1 --progress_s=5 --log_every=10 --max_sample_age=3)

"$LOCAL" "${COMMON[@]}" --g_workers=1 --d_workers=1 --steps=150 --minutes=4 \
  --num_samples=500 --out_dir="$OUT" > "$OUT.stdout" 2>&1 \
  || { cat "$OUT.stdout"; fail "paragan_local exited"; }
cat "$OUT.stdout"
grep -q '^paragan_local: 1 G and 1 D worker(s) started (decoupled, async' "$OUT.stdout" || fail "no start line naming the roles"
grep -Eq '^\[ *[0-9]+m[0-9]{2}s\] G step [0-9]+ \| .* \(d0 [0-9]+, g0 G\) \| losses D [-0-9.]+ G [-0-9.]+ \| .* \| steps/s G [0-9.]+ D [0-9.]+ \(D:G [0-9.]+\) \| buffer [0-9]+ \| sample age [0-9.]+ \| stalls [0-9]+' \
  "$OUT.stdout" || fail "no progress line with the roles' rates, buffer and sample age"
J="$OUT/summary.json"
num() { sed -n "s/^  \"$1\": \([-0-9.e+]*\),*$/\1/p" "$J"; }
grep -q '"ok": true' "$J" || fail "summary says not ok"
grep -q '"schedule": "decoupled"' "$J" || fail "summary does not say decoupled"
G=$(num g_steps); D=$(num d_steps)
echo "g_steps=$G d_steps=$D"
[ "$G" -ge 150 ] || fail "only $G G steps"
# One D update per G update (the servers' d_steps_per_g_step for DCGAN):
# G waits when it leads by more than 8, D cannot outrun the published fakes.
awk "BEGIN{r = $D / $G; exit !(r > 0.85 && r < 1.15)}" || fail "D:G = $D:$G"

# The D worker's own account: the oldest fake it trained on.
LINE=$(grep "trained on [0-9]* generated batches" "$OUT/logs/d0.log" | tail -1)
echo "$LINE"
OLDEST=$(echo "$LINE" | sed -n 's/.*oldest \([0-9]*\) G versions.*/\1/p')
USED=$(echo "$LINE" | sed -n 's/.*trained on \([0-9]*\) generated.*/\1/p')
[ -n "$OLDEST" ] && [ "$OLDEST" -le 3 ] || fail "a D step trained on a sample $OLDEST G versions old (bound 3)"
[ "$USED" -ge $((D - 2)) ] || fail "D took $D steps but trained on $USED fakes"
grep -q "g0 published [0-9]* generated batches" "$OUT/logs/g0.log" || fail "g0 did not say what it published"

# Losses move as a working GAN's: D separates real from fake (hinge D loss
# below a random D's 2, real logits above fake ones) while G's loss changes.
/usr/bin/python3 - "$OUT/logs/d0.log" "$OUT/logs/g0.log" "$OUT/samples.npy" <<'PY' || fail "not a working GAN"
import re, sys
import numpy as np
def series(path, key):
    out = []
    for line in open(path):
        if line.startswith("progress "):
            m = re.search(r" %s=([-0-9.e+]+)" % key, line)
            if m: out.append(float(m.group(1)))
    return np.array(out)
d_loss, d_real, d_fake = (series(sys.argv[1], k) for k in ("d_loss", "d_real", "d_fake"))
g_loss = series(sys.argv[2], "g_loss")
print("D loss", d_loss.round(2).tolist())
print("G loss", g_loss.round(2).tolist())
assert len(d_loss) >= 10 and len(g_loss) >= 10, "too few progress lines"
assert np.all(np.isfinite(d_loss)) and np.all(np.isfinite(g_loss)), "non-finite loss"
late = slice(len(d_loss) // 2, None)
assert d_loss[late].mean() < 1.9, "D never beat a random D: %s" % d_loss[late].mean()
assert (d_real - d_fake)[late].mean() > 0, "D does not tell real from fake"
assert g_loss.std() > 0.05, "G's loss does not move"
# Diverse samples: pixels vary across samples and few pairs are near copies.
x = np.load(sys.argv[3]).astype(np.float64).reshape(500, -1)
x = (x - x.min()) / max(x.max() - x.min(), 1e-9)
spread = x.std(axis=0).mean()
d = np.abs(x[:, None, :] - x[None, :, :]).mean(axis=2)
near = (d[np.triu_indices(len(x), 1)] < 0.02).mean()
print("per-pixel std across samples %.3f, near-identical pairs %.4f" % (spread, near))
assert spread > 0.03, "samples look alike (mode collapse)"  # 0.06-0.07 at 150-170 G steps, coupled or not
assert near < 0.01, "many near-identical samples"
PY
echo "ok: decoupled training moves the losses and gives diverse samples"

# A role with two workers survives losing one (G, then D): the run ends ok,
# the killed worker is reported, and its role's other worker keeps training.
for victim in g1 d1; do
  OUT=$TMP/kill_$victim
  "$LOCAL" "${COMMON[@]}" --g_workers=2 --d_workers=2 --steps=0 --minutes=0.9 \
    --num_samples=16 --kill_process=$victim --kill_after_s=12 --out_dir="$OUT" \
    > "$OUT.stdout" 2>&1 || { cat "$OUT.stdout"; fail "run with $victim killed failed"; }
  grep -q "$victim (pid [0-9]*) died unexpectedly: killed by signal 9" "$OUT.stdout" \
    || { cat "$OUT.stdout"; fail "the death of $victim was not reported"; }
  J="$OUT/summary.json"
  grep -q '"ok": true' "$J" || fail "summary of the $victim run not ok"
  # Both tables moved in the last progress lines, after the kill.
  python_out=$(/usr/bin/python3 - "$OUT.stdout" <<'PY'
import re, sys
rows = []
for l in open(sys.argv[1]):
    m = re.match(r"\[ *(\d+)m(\d+)s\] G step \d+ \| D/G versions (\d+)/(\d+)", l)
    if m: rows.append((60 * int(m.group(1)) + int(m.group(2)), int(m.group(3)), int(m.group(4))))
after = [r for r in rows if r[0] >= 12 + 25]  # the kill, then a grace
assert len(after) >= 2, "no progress lines well after the kill: %s" % rows
print("D %d -> %d, G %d -> %d" % (after[0][1], after[-1][1], after[0][2], after[-1][2]))
assert after[-1][1] > after[0][1] and after[-1][2] > after[0][2], "training stopped"
PY
) || fail "training did not go on after $victim died: $python_out"
  echo "ok: $victim killed, training went on ($python_out)"
done
echo PASS
