"""xray: what a container image holds, read from one `ENGINE save` archive, never run.

    python -m tools.xray IMAGE [--json] [-o FILE]

Sizes, layers, config, Debian packages, Python distributions, setuid/setgid files,
paths the runtime user can write and file totals. The filesystem comes from the
archive (layers applied in order, whiteouts included), not from a container: the
image need not have a shell. Standard library only, besides harness.engine.

- engine.py: what the engine is asked (inspect, history, one save).
- filesystem.py, elf.py: the archive's layers applied in order; what kind of ELF a file is.
- accounts.py, packages.py, permissions.py: what the image's own files say.
- facts.py: the plain data all that gives (the JSON output); gather.py collects it.
- render.py: the Markdown report from the facts.
"""


class XrayError(Exception):
    """A failure worth one line on stderr rather than a traceback."""
