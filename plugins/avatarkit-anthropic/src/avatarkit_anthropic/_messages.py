"""Mapping an avatarkit conversation onto the Messages API's shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypedDict

from avatarkit.providers import Message

__all__ = ["CONVERSATION_START", "Turn", "to_anthropic"]

#: Stands in for the user when a conversation opens with the assistant (e.g. a greeting), since
#: the API wants the first turn to be the user's.
CONVERSATION_START = "(The conversation starts.)"


class Turn(TypedDict):
    role: Literal["user", "assistant"]
    content: str


def to_anthropic(messages: Sequence[Message]) -> tuple[str | None, list[Turn]]:
    """``(system, turns)``: system messages joined into ``system``; the rest as alternating
    user/assistant turns (consecutive same-role messages merged, blank ones dropped), opening
    with a user turn."""
    system = "\n\n".join(m.content.strip() for m in messages if m.role == "system")
    turns: list[Turn] = []
    for m in messages:
        if m.role == "system" or not m.content.strip():
            continue
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"] += "\n\n" + m.content
        else:
            turns.append({"role": m.role, "content": m.content})
    if turns and turns[0]["role"] == "assistant":
        turns.insert(0, {"role": "user", "content": CONVERSATION_START})
    if turns and turns[-1]["role"] == "assistant":
        # a final assistant turn is a prefill the reply continues; the API rejects trailing space
        turns[-1]["content"] = turns[-1]["content"].rstrip()
    return system or None, turns
