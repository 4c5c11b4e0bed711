"""Logging set-up for processes (library modules only ever call ``logging.getLogger(__name__)``)."""

from __future__ import annotations

import logging
import sys


def setup(level: str = "INFO", process: str = "") -> None:
    prefix = f"[{process}] " if process else ""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
