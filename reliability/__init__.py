"""Reliability scenarios (issue 5): faults, load and hostile input against the running image.

The tests run each scenario at a short size; `python -m reliability.run` runs them at
full size and writes reliability/REPORT.md.
"""
