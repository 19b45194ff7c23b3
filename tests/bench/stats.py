"""Shared benchmark arithmetic and table printing (DESIGN.md §5).

Every benchmark reports our figure beside its anchor measured in the same run: median, spread
(p10–p90 of the samples, or the min–max of repeated throughput runs) and the ratio ours/anchor.
Benchmarks never pass or fail; they print.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation; samples need not be sorted."""
    if not samples:
        return float("nan")
    s = sorted(samples)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Summary:
    n: int
    median: float
    p10: float
    p90: float
    p99: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        return cls(
            n=len(samples),
            median=statistics.median(samples) if samples else float("nan"),
            p10=percentile(samples, 10),
            p90=percentile(samples, 90),
            p99=percentile(samples, 99),
        )


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def fmt_ratio(ours: float, anchor: float) -> str:
    if anchor == 0 or anchor != anchor:
        return "n/a"
    return f"{ours / anchor:.2f}×"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A Markdown table, ready to paste into the README."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(flush=True)
