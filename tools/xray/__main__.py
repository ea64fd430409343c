"""The command: `python -m tools.xray IMAGE [--json] [-o FILE]`, from the repository root."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import harness.engine
from harness.engine import EngineError
from tools.xray import XrayError
from tools.xray.gather import gather
from tools.xray.render import markdown


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m tools.xray",
        description="Report of a container image, read from its saved archive. "
                    "The engine is ENGINE's (default podman).")
    parser.add_argument("image", help="image name or ID")
    parser.add_argument("--json", action="store_true", help="the facts as JSON, not Markdown")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        facts = gather(args.image, harness.engine.chosen())
    except (XrayError, EngineError, subprocess.TimeoutExpired) as error:
        print(f"xray: {' '.join(str(error).split())}", file=sys.stderr)  # one line
        return 1
    text = facts.json() if args.json else markdown(
        facts, shlex.join(["python", "-m", "tools.xray", *argv]))
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
