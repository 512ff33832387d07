"""Shared helpers for the benchmark scripts: percentiles, one-line rows, JSON results."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summary(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50": pct(ms, 50),
        "p95": pct(ms, 95),
        "p99": pct(ms, 99),
        "max": max(ms),
        "n": len(ms),
    }


def row(label: str, s: dict[str, float]) -> str:
    return f"  {label:<50} p50 {s['p50']:8.3f} ms   p95 {s['p95']:8.3f} ms   max {s['max']:8.3f} ms"


def conditions() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_1min": round(load[0], 2),
    }


def write_json(path: str | None, results: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(results, indent=1))
