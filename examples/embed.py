"""Embedding avatarkit in your own async code: load a YAML session, watch its events, talk.

    uv run python examples/embed.py [SESSION.yaml]

Runs with avatarkit alone (examples/scripted.yaml: the scripted LLM and the console renderer).
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from avatarkit import AvatarSession, Event, load_session

HERE = Path(__file__).parent


def show(event: Event) -> None:
    """Print what the avatar does, as it does it."""
    if event.type == "sentence_start":
        print(f"  avatar says: {event.text}")
    elif event.type == "metrics" and event.time_to_first_speech is not None:
        print(f"  (first speech after {event.time_to_first_speech * 1000:.0f} ms)")
    elif event.type == "error":
        print(f"  error in {event.stage}: {event.message}")


async def main(path: str, *, fast: bool = False) -> list[str]:
    # ${VAR} in the YAML is read from `env` (os.environ by default): `fast` skips the pacing.
    env = {"SCRIPTED_DELAY": "0", "CONSOLE_WPM": "0"} if fast else None
    session: AvatarSession = load_session(path, env=env)
    replies = []
    async with session:
        session.on_event(show)
        for line in ["Hello!", "What is your name?", "Tell me something."]:
            print(f"you: {line}")
            replies.append(await session.send(line))
        await session.say("Goodbye!")
    return replies


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else str(HERE / "scripted.yaml"))
