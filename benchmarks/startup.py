"""Start-up: wall time of ``import avatarkit``, ``avatarkit --help`` and ``avatarkit providers``
in a fresh interpreter, and which provider SDKs (and pydantic) got imported.

Targets: ``--help`` under 5x ``python -c pass``; ``providers`` (every plugin of the checkout
installed) under 0.5 s; ``import avatarkit`` and ``--help`` import neither pydantic nor an SDK.

    uv run python benchmarks/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import conditions, row, summary, write_json

SDKS = ["openai", "anthropic", "livekit", "piper", "onnxruntime", "av", "websockets", "httpx_ws"]
PROBE = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print('\\nMODULES ' + json.dumps(sorted({m.split('.')[0] for m in "
    "sys.modules}))))\n"
)
COMMANDS = {
    "import avatarkit": PROBE + "import avatarkit\n",
    "avatarkit --help": PROBE
    + "sys.argv = ['avatarkit', '--help']\nfrom avatarkit.cli import main\nmain()\n",
    "avatarkit providers": PROBE + "import contextlib, io\nfrom avatarkit.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n    main(['providers'])\n",
}
HEAVY = ["pydantic", "numpy", "yaml", "anyio"]


# As a user's machine runs it: with bytecode caches (pip and Python write them; this machine's
# environment sets PYTHONDONTWRITEBYTECODE, which would time the compiler instead). Each command
# runs once unmeasured first, so its caches exist.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(code: str) -> tuple[float, list[str], int]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - started
    modules: list[str] = []
    for line in proc.stdout.splitlines():
        if line.startswith("MODULES "):
            modules = json.loads(line[len("MODULES ") :])
    return elapsed, modules, proc.returncode


def main(runs: int, json_path: str | None) -> None:
    results: dict[str, object] = {"conditions": conditions()}
    print(f"start-up: {runs} fresh interpreters each, bytecode cached (one warm-up run each)")
    for code in ("pass", *COMMANDS.values()):
        run(code)
    baseline = summary([run("pass")[0] for _ in range(runs)])
    results["python -c pass"] = baseline
    print(row("python -c pass (the interpreter alone)", baseline))
    for label, code in COMMANDS.items():
        measured = [run(code) for _ in range(runs)]
        s = summary([m[0] for m in measured])
        sdks = sorted({sdk for m in measured for sdk in m[1] if sdk in SDKS})
        heavy = sorted({h for m in measured for h in m[1] if h in HEAVY})
        codes = sorted({m[2] for m in measured})
        ratio = s["p50"] / baseline["p50"]
        results[label] = {
            **s,
            "sdks_imported": sdks,
            "heavy_imported": heavy,
            "ratio_to_python": ratio,
            "exit_codes": codes,
        }
        print(
            row(label, s) + f"   {ratio:.1f}x python   SDKs: {sdks or 'none'}   "
            f"also loads: {heavy or 'none'}   exit {codes}"
        )
    write_json(json_path, results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json")
    args = parser.parse_args()
    main(args.runs, args.json)
