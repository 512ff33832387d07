"""The scale benchmarks still run (tiny sizes) and report what docs/performance.md quotes.

Speed is never asserted here (shared machines): only that the scripts work and their results
hold the fields, and that counts that do not depend on the machine come out as they must.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str, tmp_path: Path) -> dict[str, object]:
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert isinstance(result, dict)
    return result


@pytest.mark.parametrize(
    "extra",
    [
        ["--route", "text", "--seconds", "2"],
        # an audio turn lasts about 5 s: a window that long ends some
        ["--route", "audio", "--seconds", "5", "--no-engine"],
        ["--route", "audio", "--seconds", "5", "--gc", "tuned", "--renderer-block", "0.2"],
        ["--route", "audio", "--seconds", "5", "--gc", "tuned", "--loop", "uvloop"],
    ],
)
def test_scale_runs_and_reports_lag_cpu_and_collector_pauses(
    extra: list[str], tmp_path: Path
) -> None:
    result = _run("scale.py", "--sessions", "20", *extra, tmp_path=tmp_path)
    for key in (
        "turns",
        "cpu_ms_per_turn",
        "lag_p99_ms",
        "gc_total_ms",
        "gc2_count",
        "full_collection_ms",
    ):
        assert key in result
    assert result["engine"] is ("--no-engine" not in extra)
    assert result["gc_policy"] == ("tuned" if "tuned" in extra else "python")
    assert result["loop"] == ("uvloop" if "uvloop" in extra else "asyncio")
    assert isinstance(result["turns"], int)
    assert result["turns"] > 0


def test_audio_turn_cost_counts_the_engine_above_the_fakes(tmp_path: Path) -> None:
    engine = _run("audio_turn_cost.py", "--no-calls", tmp_path=tmp_path)
    alone = _run("audio_turn_cost.py", "--no-calls", "--no-engine", tmp_path=tmp_path)
    assert isinstance(engine["callbacks_per_turn"], float)
    assert isinstance(alone["callbacks_per_turn"], float)
    # Loop callbacks are counts, not times: the engine adds some, never removes the fakes'.
    assert engine["callbacks_per_turn"] > alone["callbacks_per_turn"]
