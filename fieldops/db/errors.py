"""Database errors the layers above may catch without importing psycopg themselves."""

from psycopg import DataError, OperationalError

# DataError: PostgreSQL refused a value, SQLSTATE class 22 (range, NUL byte, syntax)
__all__ = ["DataError", "OperationalError", "is_unavailable"]

# Server answers meaning "no connection now": connection exceptions (class 08), too many
# connections, and a server shutting down, crashed or still starting up.
_UNAVAILABLE_STATES = ("53300", "57P01", "57P02", "57P03")


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means no usable connection: the pool gave none in time (PoolTimeout), the
    server is unreachable, the connection was lost, or the server refuses connections for now.

    Errors raised by the client itself (no SQLSTATE) are connection failures; other operational
    errors, such as a cancelled statement or a lock timeout, are not outages.
    """
    if not isinstance(exc, OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _UNAVAILABLE_STATES
