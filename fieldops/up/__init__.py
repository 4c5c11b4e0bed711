"""``fieldops up``: run the whole system on one machine (managed services, preparation, processes)."""
