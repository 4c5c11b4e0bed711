from ingest.metrics import SECONDS, Histogram


def test_observing_many_values_at_once_counts_as_observing_each():
    values = [0.0, SECONDS[0], SECONDS[0] * 1.5, SECONDS[3], 1e9, -1.0]
    one, many = Histogram(SECONDS), Histogram(SECONDS)
    for v in values:
        one.observe(v)
    many.observe_many(values)
    assert (many.counts, many.total, many.n) == (one.counts, one.total, one.n)
