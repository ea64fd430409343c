"""Debian's headless Chromium as the tests run it (shared/BUILD-MACHINE.md)."""

from __future__ import annotations

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
