"""Hostile input (issue 5, items 6 and 7): requests no honest client sends, and random ones.

Everything goes over a raw socket, byte for byte (harness.rawhttp).

- cases.py: CASES, named hostile requests with the statuses each may get. Every
  error is JSON whose "status" is the HTTP status; spoofed client addresses never
  reach the app. `run_hostile` sends them all for the report; tests/test_hostile.py
  one test each.
- fuzzing.py: `fuzz`, random request lines, headers and bodies from hypothesis; no
  5xx, every answer parseable, no process restarted.
- rules.py: what every answer must be, and the tally both runs keep.

The two runs are the report's scenarios (reliability/run.py).
"""

from reliability.hostile.cases import run_hostile
from reliability.hostile.fuzzing import fuzz

__all__ = ["fuzz", "run_hostile"]
