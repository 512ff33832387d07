"""How a conversation is laid out for the Messages API."""

from avatarkit import Message
from avatarkit_anthropic._messages import CONVERSATION_START, to_anthropic


def test_system_goes_to_system_and_turns_alternate() -> None:
    system, turns = to_anthropic(
        [
            Message("system", "Be brief."),
            Message("user", "Hi"),
            Message("assistant", "Hello."),
            Message("user", "Bye"),
        ]
    )
    assert system == "Be brief."
    assert turns == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]


def test_consecutive_same_role_messages_are_merged() -> None:
    system, turns = to_anthropic(
        [
            Message("system", "One."),
            Message("user", "Hi"),
            Message("user", "Are you there?"),
            Message("assistant", "Yes."),
            Message("system", "Two."),
            Message("assistant", "I am."),
            Message("user", "Good"),
        ]
    )
    assert system == "One.\n\nTwo."
    assert turns == [
        {"role": "user", "content": "Hi\n\nAre you there?"},
        {"role": "assistant", "content": "Yes.\n\nI am."},
        {"role": "user", "content": "Good"},
    ]


def test_leading_assistant_gets_a_user_turn_before_it() -> None:
    system, turns = to_anthropic(
        [Message("assistant", "Welcome! Ask me anything."), Message("user", "Hi")]
    )
    assert system is None
    assert turns == [
        {"role": "user", "content": CONVERSATION_START},
        {"role": "assistant", "content": "Welcome! Ask me anything."},
        {"role": "user", "content": "Hi"},
    ]


def test_blank_messages_are_dropped_and_a_final_assistant_is_trimmed() -> None:
    _, turns = to_anthropic(
        [
            Message("user", "Hi"),
            Message("assistant", "   "),  # e.g. an interrupted reply with nothing spoken
            Message("user", "Hello?"),
            Message("assistant", "Well, "),
        ]
    )
    assert turns == [
        {"role": "user", "content": "Hi\n\nHello?"},
        {"role": "assistant", "content": "Well,"},
    ]
