#!/usr/bin/env python3
"""Checks a chaos run (chaos_run.sh) from what it left: its events, the
shards' logs, the workers' push journals and the final checkpoints. Prints
one table row per check and exits 1 if any failed.

Exactly-once accounting. In asynchronous mode a table's version grows by one
for each push applied, so every version a shard reached names exactly one
push. A shard's life runs from one start to the next (a restart goes back to
the version of the checkpoint it restored). For each shard, table and life
the versions that survive into the final state are (start, end], where end
is the next life's restored version (or the final version). Each of those
versions must be explained by a push: one the journal shows answered as
applied at that version (or a duplicate answer repeating it), or one whose
outcome the worker never learned in that life (it was killed, or the shard
died first) and that was not applied again in a later life. A version no
push explains is a push applied twice (or an update from nowhere); two
pushes answered with one version, or one push applied twice, fail at once.
"""

import argparse
import collections
import os
import re
import sys


def parse_kv(text):
  return dict(kv.split("=", 1) for kv in text.split() if "=" in kv)


def read_events(path):
  events = []
  with open(path) as f:
    for line in f:
      parts = line.split()
      if len(parts) < 2:
        continue
      events.append((int(parts[0]), parts[1], parse_kv(" ".join(parts[2:]))))
  return events


def read_journals(directory):
  """(worker, table, shard, id) -> {'send': t, 'done': (t, fields), 'fail': t}."""
  pushes = collections.defaultdict(dict)
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name)) as f:
      for line in f:
        kind, _, rest = line.strip().partition(" ")
        kv = parse_kv(rest)
        if kind not in ("send", "done", "fail") or "id" not in kv:
          continue
        key = (kv["worker"], kv["table"], int(kv["shard"]), int(kv["id"]))
        t = int(kv["t"])
        if kind == "done":
          pushes[key]["done"] = (t, kv)
        else:
          pushes[key][kind] = t
  return pushes


START_RE = re.compile(r"G: .* version (\d+); D: .* version (\d+)( \(restored "
                      r"from checkpoint (\S+)\))?")
BYE_RE = re.compile(r"G version (\d+), D version (\d+); bye")


def read_shard_log(path):
  info = {"restored": None, "start": None, "bye": None, "skipped": 0}
  with open(path) as f:
    for line in f:
      m = START_RE.search(line)
      if m and info["start"] is None:
        info["start"] = {"G": int(m.group(1)), "D": int(m.group(2))}
        info["restored"] = m.group(4)
      m = BYE_RE.search(line)
      if m:
        info["bye"] = {"G": int(m.group(1)), "D": int(m.group(2))}
      if "skipped a checkpoint" in line:
        info["skipped"] += 1
  return info


class Life:

  def __init__(self, shard, index, begin_ns, log):
    self.shard, self.index, self.begin_ns = shard, index, begin_ns
    self.end_ns = None  # the next life's start (None: the last life)
    self.log = log
    self.killed_ns = None
    self.expect = None  # the checkpoint file this life's restart must use
    self.expect_mtime_ns = 0
    self.why = None


def lives_of(events):
  lives = collections.defaultdict(list)
  pending = {}
  for t, name, kv in events:
    if name == "shard_start":
      s = int(kv["shard"])
      life = Life(s, len(lives[s]), t, kv["log"])
      if lives[s]:
        lives[s][-1].end_ns = t
      if s in pending:
        life.expect, life.expect_mtime_ns, life.why = pending.pop(s)
      lives[s].append(life)
    elif name == "shard_kill":
      s = int(kv["shard"])
      lives[s][-1].killed_ns = t
      pending[s] = [None, 0, kv.get("why")]
    elif name == "shard_expect":
      s = int(kv["shard"])
      pending[s][0] = kv["file"]
      pending[s][1] = int(kv["mtime_ns"])
  return lives


def life_at(lives, t):
  """The life whose process answered at time t (None: before any)."""
  found = None
  for life in lives:
    if t >= life.begin_ns:
      found = life
  return found


def account(lives, logs, pushes, table):
  """Exactly-once accounting of one shard's table over its lives. Returns
  (rows of per-life numbers, list of violations)."""
  violations = []
  if not lives:
    return [], ["no shard lives"]
  shard = lives[0].shard
  applied_at = collections.defaultdict(list)  # life index -> [(version, key)]
  in_doubt = collections.defaultdict(list)  # life index -> [key]
  applied_lives = collections.defaultdict(list)  # key -> [life index]
  for key, p in pushes.items():
    if key[1] != table or key[2] != shard or "send" not in p:
      continue
    sent_life = life_at(lives, p["send"])
    # A send while the shard was down reached no process of that life.
    if sent_life is not None and sent_life.killed_ns is not None and \
        p["send"] >= sent_life.killed_ns:
      sent_life = None
    done = p.get("done")
    if done is not None:
      t, kv = done
      answered = life_at(lives, t)
      version = int(kv["version"])
      if kv["duplicate"] == "1":
        # The first attempt's result, applied in the life it was sent to.
        if kv["accepted"] == "1" and sent_life is not None:
          applied_at[sent_life.index].append((version, key))
          applied_lives[key].append(sent_life.index)
        continue
      if kv["accepted"] == "1":
        applied_at[answered.index].append((version, key))
        applied_lives[key].append(answered.index)
        if sent_life is not None and sent_life is not answered:
          in_doubt[sent_life.index].append(key)
        continue
      # Refused: the answering attempt changed nothing.
      if sent_life is not None and sent_life is not answered:
        in_doubt[sent_life.index].append(key)
      continue
    if sent_life is not None:  # given up, or never answered
      in_doubt[sent_life.index].append(key)
  for key, where in applied_lives.items():
    if len(where) > 1:
      violations.append(f"push {key} answered as applied {len(where)} times")
  rows = []
  for i, life in enumerate(lives):
    log = logs[life.log]
    start = log["start"][table] if log["start"] else 0
    if i + 1 < len(lives):
      nxt = logs[lives[i + 1].log]["start"]
      end = nxt[table] if nxt else start
    else:
      end = log["bye"][table] if log["bye"] else None
      if end is None:
        violations.append(f"shard {shard} life {i}: no final version")
        continue
    by_version = collections.defaultdict(set)
    for v, key in applied_at[i]:
      by_version[v].add(key)
      if v <= start:
        violations.append(f"shard {shard} {table} life {i}: push {key} "
                          f"answered version {v}, not after the life's "
                          f"start at {start}")
    for v, keys in by_version.items():
      if len(keys) > 1:
        violations.append(f"shard {shard} {table} life {i}: version {v} "
                          f"answered to {len(keys)} pushes")
    surviving = set(range(start + 1, end + 1))
    holes = len(surviving - set(by_version))
    candidates = [k for k in in_doubt[i] if not applied_lives.get(k)]
    if holes > len(candidates):
      violations.append(
          f"shard {shard} {table} life {i}: {holes - len(candidates)} of "
          f"versions {start + 1}..{end} explained by no push (applied twice?)")
    reached = max([v for v, _ in applied_at[i]] + [end])
    rows.append({
        "life": i, "start": start, "end": end, "applied": len(by_version),
        "in_doubt": len(candidates), "holes": holes,
        "lost": max(0, reached - end) if i + 1 < len(lives) else 0,
    })
  return rows, violations


class Table:

  def __init__(self):
    self.rows = []

  def add(self, check, ok, detail):
    self.rows.append((check, "ok" if ok is True else
                      ("FAIL" if ok is False else ok), detail))

  def print(self):
    w = max(len(r[0]) for r in self.rows)
    print(f"{'check':<{w}}  result  detail")
    for check, result, detail in self.rows:
      print(f"{check:<{w}}  {result:<6}  {detail}")

  def failed(self):
    return any(r[1] == "FAIL" for r in self.rows)


def check(directory, interval_s, steps, tmpfs):
  table = Table()
  events = read_events(os.path.join(directory, "events.txt"))
  names = collections.Counter(name for _, name, _ in events)
  pushes = read_journals(os.path.join(directory, "journal"))
  lives = lives_of(events)
  logs = {life.log: read_shard_log(life.log)
          for ls in lives.values() for life in ls}

  # Step count: shard 0's final G version.
  final = logs[lives[0][-1].log]["bye"] if lives.get(0) else None
  g = final["G"] if final else -1
  table.add("training reached its step count", g >= steps,
            f"G version {g} at the end, {steps} wanted")

  with open(os.path.join(directory, "finite.txt")) as f:
    finite = f.read()
  table.add("no table holds NaN or Inf", "finite_rc=0" in finite and
            " 0 not finite" in finite,
            "; ".join(l.split(": ", 1)[-1] for l in finite.splitlines()
                      if "not finite" in l) or finite.strip())

  restarts = [l for ls in lives.values() for l in ls if l.index > 0]
  wrong, loss = [], []
  for life in restarts:
    got = logs[life.log]["restored"]
    if got != life.expect:
      wrong.append(f"shard {life.shard} restored {got}, newest intact was "
                   f"{life.expect}")
    if life.why == "torn" and logs[life.log]["skipped"] == 0:
      wrong.append(f"shard {life.shard} did not report the torn checkpoint")
    prev = lives[life.shard][life.index - 1]
    age = (prev.killed_ns - life.expect_mtime_ns) / 1e9 \
        if life.expect_mtime_ns else float("inf")
    loss.append((life.shard, life.why, age))
  table.add("every shard restarted from its newest intact checkpoint",
            bool(restarts) and not wrong,
            "; ".join(wrong) or ", ".join(
                f"shard {l.shard} ({l.why}): {os.path.basename(l.expect)}"
                for l in restarts))
  # The restored file was written at most one interval (and the time a
  # write takes, 1 s) before the crash.
  table.add("at most one checkpoint interval lost per shard restart",
            bool(loss) and all(a <= interval_s + 1.0 for _, _, a in loss),
            ", ".join(f"shard {s} ({why}): {a:.1f} s of training lost "
                      f"(interval {interval_s} s)" for s, why, a in loss))

  all_violations, summary = [], []
  for s in sorted(lives):
    for t in ("G", "D"):
      rows, violations = account(lives[s], logs, pushes, t)
      all_violations += violations
      applied = sum(r["applied"] for r in rows)
      doubt = sum(r["in_doubt"] for r in rows)
      lost = sum(r["lost"] for r in rows)
      summary.append(f"{t}@{s}: {applied} applied, {doubt} in doubt, "
                     f"{lost} rolled back")
  table.add("zero doubly-applied pushes, every version explained",
            not all_violations and bool(pushes),
            "; ".join(all_violations[:5]) or "; ".join(summary))

  answered = [p["done"] for p in pushes.values() if "done" in p]
  def pushes_between(a, b):
    return sum(1 for t, kv in answered
               if a <= t < b and kv["accepted"] == "1")
  t_of = lambda name: [t for t, n, _ in events if n == name]
  ups = [(t, kv["worker"]) for t, n, kv in events if n == "worker_up"]
  kills = [kv["worker"] for _, n, kv in events if n == "worker_kill"]
  rejoined = []
  for t, w in ups:
    if w in kills and t > t_of("chaos_begin")[0]:
      mine = sum(1 for k, p in pushes.items()
                 if k[0] == w and "done" in p and p["done"][0] > t and
                 p["done"][1]["accepted"] == "1")
      rejoined.append((w, mine))
  table.add("killed workers restarted and trained again",
            bool(rejoined) and all(n > 0 for _, n in rejoined),
            f"{len(kills)} SIGKILLs; pushes by the restarted id from its restart to the end: " +
            ", ".join(f"{w} {n}" for w, n in rejoined))

  data_up = [t for t, n, _ in events if n == "data_up"]
  after = pushes_between(data_up[-1], data_up[-1] + 30e9) if len(data_up) > 1 \
      else 0
  table.add("training went on after the data service restarted",
            len(data_up) > 1 and after > 0,
            f"{after} pushes applied in the 30 s after its restart")

  if not tmpfs:
    table.add("a full checkpoint disk keeps training and the last checkpoint",
              "SKIPPED", "no tmpfs (needs root)")
  else:
    full = [(t, kv) for t, n, kv in events if n == "disk_full"]
    failed = [kv for _, n, kv in events if n == "checkpoint_failed"]
    freed = t_of("disk_freed")
    resumed = [kv for _, n, kv in events if n == "checkpoint_resumed"]
    ok = bool(full and freed and resumed) and \
        all(int(kv["seen"]) > 0 and kv["newest"] != "none" for kv in failed) \
        and len(failed) == 2 and \
        all(int(resumed[0][k]) > 0 for k in ("shard0", "shard1"))
    during = pushes_between(full[0][0], freed[0]) if full and freed else 0
    ok = ok and during > 0
    table.add("a full checkpoint disk keeps training and the last checkpoint",
              ok, f"checkpoints failed on both shards, {during} pushes "
              f"applied while full, newest intact kept: " +
              ", ".join(os.path.basename(kv["newest"]) for kv in failed) +
              "; checkpoints again after freeing" if ok else
              f"full={full} failed={failed} resumed={resumed} during={during}")
  table.add("faults injected", names["worker_kill"] > 0 and
            names["shard_kill"] >= 2 and names["data_kill"] == 1,
            f"{names['worker_kill']} worker SIGKILLs, "
            f"{names['shard_kill']} shard SIGKILLs "
            f"({names['checkpoint_torn']} with its newest checkpoint torn), "
            f"{names['data_kill']} data-service SIGKILL, "
            f"{names['disk_full']} full disk")
  table.print()
  return 1 if table.failed() else 0


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--dir", required=True)
  ap.add_argument("--interval_s", type=float, required=True)
  ap.add_argument("--steps", type=int, required=True)
  ap.add_argument("--tmpfs", type=int, default=1)
  a = ap.parse_args()
  rc = check(a.dir, a.interval_s, a.steps, a.tmpfs == 1)
  print("PASS" if rc == 0 else "FAIL: see the table")
  return rc


if __name__ == "__main__":
  sys.exit(main())
