"""The OpenAPI 3.1 document of ``/api``, built from the registered routes and their docstrings."""

from __future__ import annotations

import re
from typing import Any

from flask import current_app

from fieldops.db import MAX_ID

ERROR = {"type": "object", "required": ["error"],
         "properties": {"error": {"type": "string"}, "field": {"type": "string"}}}

UNAVAILABLE = {"description": "Database unavailable; retry after Retry-After seconds",
               "headers": {"Retry-After": {"schema": {"type": "integer"}}},
               "content": {"application/json": {"schema": ERROR}}}

REQUEST_BODIES: dict[str, dict[str, Any]] = {
    "api.post_position": {
        "type": "object", "required": ["lat", "lon"],
        "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                       "lon": {"type": "number", "minimum": -180, "maximum": 180}},
    },
    "api.transition": {
        "type": "object", "required": ["to_status"],
        "properties": {
            "to_status": {"type": "string",
                          "enum": ["en_route", "on_site", "completed", "unresolved", "dispatched"]},
            "expected_version": {
                "type": "integer", "minimum": 1, "maximum": MAX_ID,
                "description": "the version read from the job (versions start at 1; a lower one is "
                               "a 400); a stale one is refused with 409 naming version"},
            "lat": {"type": "number"}, "lon": {"type": "number"},
            "note": {"type": "string"},
            "finding": {"type": "string", "enum": ["fault_confirmed", "no_fault_found", "other"]},
            "finding_mode": {"type": "string", "description": "failure mode found (fault_confirmed)"},
            "parts_used": {"type": "array", "items": {
                "type": "object", "required": ["sku", "quantity"],
                "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}}}},
        },
    },
    "api.pickup": {
        "type": "object", "required": ["location_id"],
        "properties": {"location_id": {"type": "integer",
                                       "description": "the warehouse of one of the job's pickups"}},
    },
    "api.create_override": {
        "type": "object", "required": ["job_id", "action"],
        "properties": {"job_id": {"type": "integer"},
                       "action": {"type": "string",
                                  "enum": ["assign", "move", "lock", "unlock", "unassign", "release"]},
                       "technician_id": {"type": "integer", "description": "required for assign and move"},
                       "position": {"type": "integer", "minimum": 0,
                                    "description": "0-based place in the technician's route (move)"},
                       "force": {"type": "boolean", "description": "keep despite broken rules, with a warning"}},
    },
    "api.plan_apply": {
        "type": "object", "required": ["preview_id"],
        "properties": {"preview_id": {"type": "string", "description": "from POST /api/plan/preview"}},
    },
}


def _path(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for rule in current_app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        view = current_app.view_functions[rule.endpoint]
        roles = sorted(getattr(view, "allowed_roles", ()))
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            doc = (view.__doc__ or rule.endpoint).strip().splitlines()[0]
            operation: dict[str, Any] = {
                "operationId": rule.endpoint.split(".")[-1],
                "summary": doc,
                "description": f"Allowed roles: {', '.join(roles)}",
                "parameters": [{"name": arg, "in": "path", "required": True,
                                "schema": {"type": "integer"}} for arg in sorted(rule.arguments)],
                "responses": {
                    "200": {"description": "OK"},
                    "4XX": {"description": "Error naming the field",
                            "content": {"application/json": {"schema": ERROR}}},
                    "503": UNAVAILABLE,
                },
            }
            if method == "POST":
                operation["parameters"].append(
                    {"name": "X-CSRF-Token", "in": "header", "required": True,
                     "schema": {"type": "string"}})
                operation["parameters"].append(
                    {"name": "Idempotency-Key", "in": "header", "required": False,
                     "schema": {"type": "string", "minLength": 8}})
                schema = REQUEST_BODIES.get(rule.endpoint, {"type": "object"})
                operation["requestBody"] = {"content": {"application/json": {"schema": schema}}}
            paths.setdefault(_path(rule.rule), {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "fieldops API", "version": "1"},
        "components": {"securitySchemes": {"session": {"type": "apiKey", "in": "cookie",
                                                      "name": "fieldops_session"}}},
        "security": [{"session": []}],
        "paths": dict(sorted(paths.items())),
    }
