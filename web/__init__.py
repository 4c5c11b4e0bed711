"""Web front end: technician page, dispatcher console, customer tracking, JSON API, live updates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(settings: Any, **kwargs: Any) -> Flask:
    """See :func:`web.app.create_app` (imported lazily so ``fieldops`` starts fast)."""
    from web.app import create_app as _create

    return _create(settings, **kwargs)
