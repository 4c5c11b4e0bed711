"""The service layer: jobs (work orders), SLAs, spare parts, feedback, KPIs, preventive plans."""

from fieldops.service.errors import ConflictError, NotFoundError, ServiceError, TransitionError

__all__ = ["ConflictError", "NotFoundError", "ServiceError", "TransitionError"]
