"""The ``fieldops`` command. Each service package contributes its subcommands through ``register``.

Each package in ``COMMAND_PACKAGES`` that has a ``commands`` module defines
``register(subparsers)`` there and sets ``func(args, settings) -> int`` on the parsers it adds.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import math
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from fieldops.config import LOG_LEVELS, ConfigError, load_settings
from fieldops.db import MAX_ID, DatabaseUnavailable
from fieldops.logs import setup as setup_logging
from fieldops.service.errors import ServiceError

log = logging.getLogger(__name__)

COMMAND_PACKAGES = (
    "fieldops.db",
    "fieldops.service",
    "ingest",
    "simulators",
    "predict",
    "dispatch",
    "web",
    "fieldops.up",
)


MAX_DB_ID = MAX_ID  # integer identity columns
MAX_DAYS = 36_500  # day counts on the command line: a century is more than any history holds


def int_between(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, not {value}")
        return value

    return parse


def positive_float(high: float = math.inf, low: float = 0.0) -> Callable[[str], float]:
    """An argparse type: a finite number above 0, at least ``low`` and at most ``high`` (nan and inf
    are refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a finite number above 0, not {text}")
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, not {text}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, not {text}")
        return value

    return parse


db_id = int_between(1, MAX_DB_ID)

UTC_EXAMPLE = "2026-01-01T00:00:00+00:00"


def aware_datetime(text: str) -> datetime:
    """An argparse type: an ISO 8601 time with a UTC offset (or Z), returned in UTC. A time without
    one is refused: it would be read in whatever zone the database session happens to use."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time (e.g. {UTC_EXAMPLE})") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"give a UTC offset, e.g. {UTC_EXAMPLE}, not {text!r}")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is outside the years 1 to 9999 in UTC") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fieldops", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=None, type=str.upper, choices=LOG_LEVELS,
                        help="override FIELDOPS_LOG_LEVEL")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for package in COMMAND_PACKAGES:
        name = f"{package}.commands"
        if importlib.util.find_spec(package) and importlib.util.find_spec(name):
            importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.stderr.write(f"fieldops: configuration error: {exc}\n")
        return 2
    setup_logging(args.log_level or settings.log_level, getattr(args, "process_name", ""))
    try:
        return int(args.func(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:  # a setting the command needs is missing
        sys.stderr.write(f"fieldops: configuration error: {exc}\n")
        return 2
    except DatabaseUnavailable as exc:
        sys.stderr.write(f"fieldops: {exc}\n")
        return 2
    except ServiceError as exc:  # a request the service layer refused: the user's mistake, not a defect
        sys.stderr.write(f"fieldops {args.command}: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
