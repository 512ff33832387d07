"""The realtime STT's bookkeeping, message by message: whatever order the server completes
utterances in, finals come out once each, in the order they were spoken."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from avatarkit.http import RequestContext
from avatarkit_openai.options import OpenAISTTOptions
from avatarkit_openai.stt_realtime import RealtimeStream


def stream() -> RealtimeStream:
    ctx = RequestContext(
        provider="openai STT",
        base_url="http://127.0.0.1:1/v1",
        model="m",
        api_key="sk-test-key-0123456789",
        key_env_var="OPENAI_API_KEY",
        timeout=1.0,
        max_retries=0,
    )
    return RealtimeStream(
        OpenAISTTOptions(api_key="k"), url="http://x", headers={}, ctx=ctx, provider="openai STT"
    )


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    count=st.integers(min_value=1, max_value=6),
)
def test_finals_in_speaking_order_whatever_the_completion_order(
    data: st.DataObject, count: int
) -> None:
    s = stream()
    ids = [f"item_{n}" for n in range(count)]
    events: list[dict[str, object]] = []
    for n, item in enumerate(ids):
        events += [
            {
                "type": "input_audio_buffer.speech_started",
                "item_id": item,
                "audio_start_ms": n * 1000,
            },
            {
                "type": "input_audio_buffer.speech_stopped",
                "item_id": item,
                "audio_end_ms": n * 1000 + 500,
            },
            {"type": "input_audio_buffer.committed", "item_id": item},
        ]
    completions = data.draw(st.permutations(ids))
    late: list[dict[str, object]] = []
    for item in completions:
        late.append(
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": item,
                "delta": f"words of {item}",
            }
        )
        late.append(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item,
                "transcript": f"words of {item}",
            }
        )
    out = []
    for message in events + late:
        out += s._handle(message)
    finals = [t for t in out if t.kind == "final"]
    assert [t.text for t in finals] == [f"words of {item}" for item in ids]
    assert [t.start for t in finals] == [n * 1.0 for n in range(count)]
    assert all(t.end_of_turn for t in finals)
    assert s.finals == count
    assert not s._order
    # interims are only ever shown for the utterance at the head of the line
    for t in out:
        if t.kind == "interim":
            assert t.text in {f.text for f in finals}
