"""Pure helpers of the harness: percentiles, Prometheus text parsing, target checks."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100]) of an ascending sequence; nan if empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(values: Sequence[float]) -> dict[str, float]:
    """count, mean, p50, p95, p99, p99.9, max of ``values``."""
    s = sorted(values)
    n = len(s)
    return {
        "count": float(n),
        "mean": sum(s) / n if n else math.nan,
        "p50": percentile(s, 50),
        "p95": percentile(s, 95),
        "p99": percentile(s, 99),
        "p999": percentile(s, 99.9),
        "max": s[-1] if s else math.nan,
    }


def prom_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """Sum of every sample called ``name`` (with at least ``labels``) in Prometheus text.

    Summing matters in multi-worker mode, where one series may appear once per worker.
    """
    total = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None or m.group(1) != name:
            continue
        if labels:
            got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if any(got.get(k) != v for k, v in labels.items()):
                continue
        total += float(m.group(3))
    return total


def per_request(before: float, after: float, requests: float) -> float:
    """(after - before) / requests, nan when no request was counted."""
    return (after - before) / requests if requests > 0 else math.nan


def ratio(a: float, b: float) -> float:
    """a / b, nan when b is zero or nan."""
    return a / b if b and not math.isnan(b) else math.nan


def fmt(x: float, digits: int = 0) -> str:
    """A number for the results table ("-" for nan)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def verdict(value: float, target: float, *, at_most: bool = False) -> str:
    """``met`` / ``MISSED`` / ``n/a`` for one target."""
    if value is None or math.isnan(value):
        return "n/a"
    ok = value <= target if at_most else value >= target
    return "met" if ok else "MISSED"
