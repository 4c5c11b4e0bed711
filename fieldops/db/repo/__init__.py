"""Repositories: the modules that own the SQL. Each takes a connection and runs in its transaction."""
