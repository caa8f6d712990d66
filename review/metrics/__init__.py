"""The lead pages' numbers, one module per page, each computed from grouped SQL tables:

- ``filters``: which settled posts count (``MetricFilter``, the one filter over ``post_label``,
  shared with the export) and what a model-vs-human disagreement is;
- ``accuracy``: the model against the humans (Accuracy page);
- ``agreement``: the humans against each other (Agreement page);
- ``activity``: throughput, handling time, backlog, failures, cache and latency (Activity page).

Import the functions from their module (``from review.metrics.accuracy import accuracy``), so
that a chart's number can be followed to its definition.
"""

from __future__ import annotations


def ratio(a: int | float, b: int | float) -> float:
    """a / b, or 0 when there is nothing to divide by (a share of nothing)."""
    return a / b if b else 0.0
