"""Tools run from the repository root as modules: `python -m tools.xray IMAGE`."""
