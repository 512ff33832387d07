"""A ``PROMETHEUS_MULTIPROC_DIR`` kept from an earlier run (a volume, a restarted container)
must not leak that run's live gauges into the new one: prometheus-client starts a process's
gauge from the file of its pid, and a restarted container's processes get the same pids."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

EARLIER_RUN = """
from avatarkit.serve.metrics import ServeMetrics

metrics = ServeMetrics()
for _ in range(7):
    metrics.sessions_open.inc()  # seven sessions open when the process was killed
metrics.turns.labels(input="typed").inc(3)
"""

NEW_RUN = """
import os
import shutil
import sys
from pathlib import Path

from avatarkit.serve.metrics import ServeMetrics, forget_dead_processes

folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
(stale,) = folder.glob("gauge_livesum_*.db")
if sys.argv[1] == "reused":  # this process got the pid the killed one had
    shutil.copy(stale, folder / f"gauge_livesum_{os.getpid()}.db")
    stale.unlink()
forget_dead_processes(starting=True)  # what `avatarkit serve` does before building its app
metrics = ServeMetrics()
metrics.sessions_open.inc()  # one session in the new run
sys.stdout.write(metrics.exposition()[0].decode())
"""


def sample(text: str, name: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    )


def test_an_earlier_runs_open_sessions_are_not_counted(tmp_path: Path) -> None:
    for case in ("reused", "other pid"):
        folder = tmp_path / case.replace(" ", "-")
        folder.mkdir()
        env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
        run = [sys.executable, "-c"]
        subprocess.run([*run, textwrap.dedent(EARLIER_RUN)], env=env, check=True, timeout=120)
        scrape = subprocess.run(
            [*run, textwrap.dedent(NEW_RUN), case],
            env=env,
            check=True,
            timeout=120,
            capture_output=True,
            text=True,
        ).stdout
        assert sample(scrape, "avatarkit_sessions_open") == 1, case
        assert sample(scrape, "avatarkit_turns_total") == 3, case  # counters add up over runs
