"""``avatarkit demo``: the offline default session, end to end, in a few seconds.

A short scripted conversation goes through the built-in ``scripted`` LLM, Piper TTS and the
``video`` renderer (the ``avatarkit-core[offline]`` extra), and the demo says where the MP4, the WAV
and the transcript are. The session is the bundled ``demo.yaml`` (``examples/offline.yaml`` is
the same session for ``avatarkit run``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TextIO

import anyio

from avatarkit.config import load_session
from avatarkit.errors import AvatarKitError, ProviderNotFound
from avatarkit.plugins import ProviderRegistry

__all__ = ["TURNS", "main", "run"]

#: What the visitor says, one turn each; the demo YAML's scripted rules answer them.
TURNS = (
    "Hello! Who are you?",
    "How do you talk?",
    "Where does the video go?",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatarkit demo",
        description="Run a short scripted conversation offline (scripted LLM, Piper TTS, "
        "video renderer) and write the avatar to an MP4, a WAV and a transcript.",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        type=Path,
        default=Path("avatarkit-demo"),
        help="folder for demo.mp4, demo.wav and demo.vtt (default: ./avatarkit-demo)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        anyio.run(run, args.output)
    except AvatarKitError as exc:
        sys.stderr.write(f"avatarkit demo: {exc}\n")
        # several problems in the session file come as one ConfigError listing them all
        problems = getattr(exc, "problems", ()) or (exc,)
        if any(isinstance(p, ProviderNotFound) for p in problems):
            sys.stderr.write(
                "The demo needs the offline providers: pip install 'avatarkit-core[offline]'\n"
            )
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("avatarkit demo: interrupted\n")
        return 130
    return 0


async def run(
    output: Path,
    *,
    turns: Sequence[str] = TURNS,
    registry: ProviderRegistry | None = None,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> list[Path]:
    """Run the demo session, writing into ``output``; returns the files written.

    ``registry`` and ``env`` are passed to :func:`~avatarkit.load_session` (providers to use,
    variables for the YAML); ``out`` receives the conversation (default: standard output).
    """
    out = out or sys.stdout
    variables = dict(os.environ if env is None else env)
    variables["AVATARKIT_DEMO_OUTPUT"] = str(output)
    started = time.perf_counter()
    with resources.as_file(resources.files("avatarkit") / "demo.yaml") as config:
        session = load_session(config, registry=registry, env=variables)
    out.write("avatarkit demo: scripted LLM -> Piper TTS -> video renderer, all offline\n\n")
    async with session:
        for text in turns:
            out.write(f"you:    {text}\n")
            out.flush()
            reply = await session.send(text)
            out.write(f"avatar: {reply}\n\n")
            out.flush()
    renderer = session.renderer
    files: list[Path] = list(renderer.files.all())
    seconds = renderer.duration
    elapsed = time.perf_counter() - started
    out.write(f"Rendered {seconds:.1f} s of video in {elapsed:.1f} s:\n")
    for label, path in zip(("video", "audio", "transcript"), files, strict=True):
        out.write(f"  {label:<11} {path}\n")
    out.flush()
    return files
