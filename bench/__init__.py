"""The benchmark: `python -m bench` (see __main__.py) and `python -m bench.compare`.

setups.py defines and runs the four setups, load.py loads them, report.py writes
the figures down; the engine is the ENGINE setting (harness.engine).
"""

from __future__ import annotations

import sys
import time


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
