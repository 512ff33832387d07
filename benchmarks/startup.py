"""Start-up: wall time of ``import avatarkit`` and ``avatarkit --help`` in a fresh interpreter,
and which provider SDKs got imported (none should be).

    uv run python benchmarks/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
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
}


def run(code: str) -> tuple[float, list[str], int]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    modules: list[str] = []
    for line in proc.stdout.splitlines():
        if line.startswith("MODULES "):
            modules = json.loads(line[len("MODULES ") :])
    return elapsed, modules, proc.returncode


def main(runs: int, json_path: str | None) -> None:
    results: dict[str, object] = {"conditions": conditions()}
    print(f"start-up: {runs} fresh interpreters each")
    baseline = summary([run("pass")[0] for _ in range(runs)])
    results["python -c pass"] = baseline
    print(row("python -c pass (the interpreter alone)", baseline))
    for label, code in COMMANDS.items():
        measured = [run(code) for _ in range(runs)]
        s = summary([m[0] for m in measured])
        sdks = sorted({sdk for m in measured for sdk in m[1] if sdk in SDKS})
        codes = sorted({m[2] for m in measured})
        results[label] = {**s, "sdks_imported": sdks, "exit_codes": codes}
        print(row(label, s) + f"   SDKs imported: {sdks or 'none'}   exit {codes}")
    write_json(json_path, results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json")
    args = parser.parse_args()
    main(args.runs, args.json)
