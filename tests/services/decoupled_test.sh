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
source "$(dirname "$0")/bin_dir.sh"
BIN=$(make_bin_dir "$SERVER" "$DATA" "$WORKER" "$INIT" "$SAMPLE")
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
# Role auto: 4 workers whose G steps cost several times their D steps
# (simulated compute: 120 ms vs 20 ms, plus the real pushes, pulls and data)
# converge to 3 G + 1 D (T(k) = min(k g, (4 - k) d) peaks there unless a D
# step costs over 40 ms), hold D:G within 10% of its setting (1) once
# settled, and after w3 is killed the 3 left settle at 2 G + 1 D.
OUT=$TMP/auto
"$LOCAL" "${COMMON[@]}" --auto_roles --num_workers=4 --steps=0 --minutes=1.6 \
  --num_samples=16 --data_flags="--role_report_s=2 --role_lease_s=8 --role_min_dwell_s=4" \
  --worker_flags="--simulate_g_step_ms=120 --simulate_d_step_ms=20" \
  --kill_process=w3 --kill_after_s=50 --out_dir="$OUT" > "$OUT.stdout" 2>&1 \
  || { cat "$OUT.stdout"; fail "auto-roles run failed"; }
grep "role coordinator" "$OUT/logs/data.log" || fail "the coordinator logged nothing"
/usr/bin/python3 - "$OUT" <<'PY' || { cat "$OUT.stdout"; fail "auto roles did not balance"; }
import re, sys
out = sys.argv[1]
# Progress lines: time, D and G versions, and each worker's entry ("w0 G":
# a G worker; "w1 123": a D worker's img/s; "w3 killed by signal 9").
rows = []
for line in open(out + ".stdout"):
    m = re.match(r"\[ *(\d+)m(\d+)s\] G step \d+ \| D/G versions (\d+)/(\d+) \| [0-9]+ img/s total \(([^)]*)\)", line)
    if m:
        workers = dict(e.strip().split(" ", 1) for e in m.group(5).split(","))
        rows.append((60 * int(m.group(1)) + int(m.group(2)), int(m.group(3)), int(m.group(4)), workers))
def split(workers):
    g = sum(1 for v in workers.values() if v == "G")
    d = sum(1 for v in workers.values() if re.fullmatch(r"[0-9]+", v))
    return g, d
settled = [r for r in rows if 30 <= r[0] <= 50]
assert len(settled) >= 2, rows
print("at %ds: %s" % (settled[-1][0], settled[-1][3]))
assert split(settled[-1][3]) == (3, 1), "not 3 G + 1 D before the kill"
a, b = settled[0], settled[-1]
dd, dg = b[1] - a[1], b[2] - a[2]
print("%d-%ds: D +%d, G +%d (D:G %.3f)" % (a[0], b[0], dd, dg, dd / max(dg, 1)))
assert dg > 0 and abs(dd / dg - 1) <= 0.10, "D:G off its setting (1) by more than 10%"
print("at the end (%ds): %s" % (rows[-1][0], rows[-1][3]))
assert split(rows[-1][3]) == (2, 1), "not 2 G + 1 D after w3 died"
PY
echo "ok: auto roles converged and refilled after a kill"
echo PASS
