"""Failure prediction: features, models, registry, scoring and proactive jobs."""
