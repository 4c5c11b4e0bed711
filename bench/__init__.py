"""Benchmarks behind the README's performance section; each prints one JSON line."""
