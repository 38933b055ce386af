"""check_chaos.account on made-up lives and journals: what it must accept
and what it must find."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_chaos  # noqa: E402


def lives(restored, killed_at=100, restarted_at=200):
  """Shard 0: life 0 from t=0 (version 0), SIGKILLed at killed_at; life 1
  from restarted_at, restored at G version `restored`, ending at 'bye'."""
  a = check_chaos.Life(0, 0, 0, "l0")
  a.killed_ns, a.end_ns = killed_at, restarted_at
  b = check_chaos.Life(0, 1, restarted_at, "l1")
  return [a, b]


def logs(restored, final):
  return {"l0": {"start": {"G": 0, "D": 0}, "bye": None},
          "l1": {"start": {"G": restored, "D": 0},
                 "bye": {"G": final, "D": 0}}}


def push(sent, done=None, version=0, accepted=1, duplicate=0):
  p = {"send": sent}
  if done is not None:
    p["done"] = (done, {"accepted": str(accepted), "duplicate": str(duplicate),
                        "version": str(version)})
  return p


class AccountTest(unittest.TestCase):

  def run_case(self, restored, final, pushes):
    keyed = {("w0", "G", 0, i + 1): p for i, p in enumerate(pushes)}
    return check_chaos.account(lives(restored), logs(restored, final), keyed,
                               "G")

  def test_clean_run_with_a_rollback(self):
    rows, v = self.run_case(2, 4, [
        push(10, 11, 1), push(20, 21, 2), push(30, 31, 3),  # 3: rolled back
        push(210, 211, 3), push(220, 221, 4)])
    self.assertEqual(v, [])
    self.assertEqual([r["lost"] for r in rows], [1, 0])
    self.assertEqual([r["applied"] for r in rows], [3, 2])

  def test_a_push_killed_in_flight_explains_its_version(self):
    # The checkpoint holds version 3, whose push was never answered.
    _, v = self.run_case(3, 4, [push(10, 11, 1), push(20, 21, 2), push(95),
                                push(210, 211, 4)])
    self.assertEqual(v, [])

  def test_a_retry_applied_again_after_the_restart_is_found(self):
    # Version 3 of life 0 survived in the checkpoint; its push's retry was
    # applied again in life 1: nothing else can explain version 3.
    _, v = self.run_case(3, 4, [push(10, 11, 1), push(20, 21, 2),
                                push(95, 205, 4)])
    self.assertEqual(len(v), 1, v)
    self.assertIn("explained by no push", v[0])

  def test_the_retry_answered_as_a_duplicate_is_fine(self):
    _, v = self.run_case(3, 4, [push(10, 11, 1), push(20, 21, 2),
                                push(95, 205, 3, duplicate=1),
                                push(210, 211, 4)])
    self.assertEqual(v, [])

  def test_one_version_answered_to_two_pushes_is_found(self):
    _, v = self.run_case(2, 3, [push(10, 11, 1), push(20, 21, 1),
                                push(210, 211, 3)])
    self.assertTrue(any("answered to 2 pushes" in x for x in v), v)

  def test_an_update_from_nowhere_is_found(self):
    # Final version 5 but only two pushes answered in life 1.
    _, v = self.run_case(2, 5, [push(10, 11, 1), push(20, 21, 2),
                                push(210, 211, 3), push(220, 221, 4)])
    self.assertTrue(any("explained by no push" in x for x in v), v)

  def test_a_version_not_after_the_restore_is_found(self):
    _, v = self.run_case(2, 3, [push(10, 11, 1), push(20, 21, 2),
                                push(210, 211, 2), push(220, 221, 3)])
    self.assertTrue(any("not after the life's start" in x for x in v), v)


if __name__ == "__main__":
  unittest.main()
