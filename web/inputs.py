"""Checks on every request's input: text PostgreSQL cannot store, JSON nested too deep, row ids.

Query arguments, form fields and JSON bodies are checked once, before any view runs, so no view
hands the database a NUL character or a lone surrogate (which it refuses with a 500).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from flask import abort, request
from werkzeug.routing import IntegerConverter, Map

from fieldops.db import MAX_ID
from web.access import ApiError, wants_json

PG_INT_MAX = MAX_ID  # the largest PostgreSQL ``integer``: jobs, devices, technicians, locations
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why PostgreSQL could not store ``value`` as text, or None when it can."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if _SURROGATE.search(value):
        return "must not contain unpaired surrogate characters"
    return None


def check_request() -> None:
    """Refuse (400) a request whose arguments, form fields or JSON body hold text that cannot be
    stored, or whose JSON body is nested too deeply to parse. JSON bodies are answered in JSON."""
    for source in (request.args, request.form):
        for name, values in source.lists():
            for value in (name, *values):
                problem = text_problem(value)
                if problem is None:
                    continue
                field = name if text_problem(name) is None else "parameter name"
                if wants_json():
                    raise ApiError(400, problem, field)
                abort(400, description=f"{field}: {problem}")
    if not request.is_json:
        return
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        raise ApiError(400, "is nested too deeply", "body") from None
    for field, value in _strings(data):
        problem = text_problem(value)
        if problem is not None:
            raise ApiError(400, problem, field if text_problem(field) is None else "body")


def _strings(data: Any) -> Iterator[tuple[str, str]]:
    """Every string (keys too) in parsed JSON, with the top-level key it sits under ("body" if none).

    Iterative: a body nested just below the parser's limit must not overflow the stack here.
    """
    if isinstance(data, dict):
        stack = [(key, "body") for key in data] + [(value, key) for key, value in data.items()]
    else:
        stack = [(data, "body")]
    while stack:
        value, field = stack.pop()
        if isinstance(value, str):
            yield field, value
        elif isinstance(value, dict):
            stack.extend((item, field) for pair in value.items() for item in pair)
        elif isinstance(value, list):
            stack.extend((item, field) for item in value)


class IdConverter(IntegerConverter):
    """``<id:name>``: a row id, 1 to ``PG_INT_MAX``; anything else matches no route (404)."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=PG_INT_MAX)
