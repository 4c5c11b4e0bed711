"""fieldops: field-service dispatch and predictive maintenance. This package is the shared kernel."""

__version__ = "0.1.0"
