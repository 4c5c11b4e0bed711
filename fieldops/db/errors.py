"""Database errors the layers above may catch without importing psycopg themselves."""

from psycopg import DataError

__all__ = ["DataError"]  # PostgreSQL refused a value: SQLSTATE class 22 (range, NUL byte, syntax)
