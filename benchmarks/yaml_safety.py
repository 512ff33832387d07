"""What loading a session file costs, for a normal file and for hostile ones.

The loader must have the safety of ``yaml.safe_load``: a few hundred bytes of nested aliases
(a "billion laughs" file) are refused without being expanded, and a normal file loads in about
the time ``safe_load`` takes. Figures are ours next to PyYAML's own ``safe_load`` (pure-Python
loader, the one ours builds on) on the same text.

    uv run python benchmarks/yaml_safety.py [--runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _common import conditions, row, summary, write_json

from avatarkit.config import load_config
from avatarkit.errors import ConfigError
from avatarkit.testing import FakeProvidersPlugin, registered

NORMAL = """\
system_prompt: You are a helpful assistant.
x-llm: &llm
  provider: scripted
  delay: 0.01
llm:
  <<: *llm
  replies: ["Hello there. Nice to meet you.", "Goodbye."]
  rules:
    - {match: hello, reply: Hi.}
    - {match: weather, reply: It is sunny.}
tts: {provider: fake}
renderer: {provider: fake-audio}
session: {lookahead: 2, timeouts: {first_token: 10, speak: 5}}
"""
# nine levels of nine aliases: 9**9 (387 million) strings once expanded, in about 400 bytes
BOMB = (
    "x-l0: &l0 lol\n"
    + "".join(f"x-l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
    + "llm: {provider: scripted, replies: *l9}\nrenderer: fake-text\n"
)
WIDE = "llm: scripted\nrenderer: fake-text\nx-list: [" + ", ".join(["1"] * 9_000) + "]\n"


def measure(fn: Any, runs: int) -> tuple[dict[str, float], int]:
    """Timings of ``runs`` calls, then the peak memory of one more (traced apart: tracing slows
    Python down many times)."""
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return summary(seconds), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json")
    args = parser.parse_args()
    results: dict[str, Any] = {"conditions": conditions(), "bomb_bytes": len(BOMB.encode())}
    print(f"session file loading ({args.runs} runs each; peak memory traced)")
    with tempfile.TemporaryDirectory() as tmp, registered(FakeProvidersPlugin()) as registry:
        for name, text, runs in (
            ("normal", NORMAL, args.runs),
            ("bomb", BOMB, args.runs),
            ("wide", WIDE, max(3, args.runs // 10)),
        ):
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(text)

            def ours(path: Path = path) -> None:
                try:
                    load_config(path, registry=registry)
                except ConfigError:
                    pass

            def theirs(text: str = text) -> None:
                yaml.safe_load(text)

            ours_s, ours_peak = measure(ours, runs)
            theirs_s, theirs_peak = measure(theirs, runs)
            results[name] = {"ours": ours_s, "safe_load": theirs_s, "ours_peak": ours_peak}
            size = len(text.encode())
            print(row(f"{name} ({size} B): avatarkit load_config", ours_s))
            print(f"    peak memory {ours_peak / 1e6:.2f} MB")
            print(row(f"{name} ({size} B): yaml.safe_load (parse only)", theirs_s))
            print(f"    peak memory {theirs_peak / 1e6:.2f} MB")
        try:
            load_config(Path(tmp) / "bomb.yaml", registry=registry)
        except ConfigError as exc:
            print(f"  the bomb is refused: {exc}")
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
