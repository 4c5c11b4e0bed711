"""Errors of the service layer; each names the request field at fault."""

from __future__ import annotations


class ServiceError(ValueError):
    """An invalid request; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFoundError(ServiceError, LookupError):
    """A referenced row (job, device, site, part, location) does not exist."""


class TransitionError(ServiceError):
    """The requested status change is not allowed from the job's current status."""


class ConflictError(ServiceError):
    """The job changed since the caller read it (stale ``expected_version``)."""
