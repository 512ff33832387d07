from avatarkit import Message
from avatarkit.plugins import default_registry
from avatarkit_template.plugin import EchoLLM


def test_entry_point_registers_echo() -> None:
    spec = default_registry(refresh=True).get("llm", "echo")
    assert spec.source.distribution == "avatarkit-template"
    assert spec.load_factory() is EchoLLM


async def test_echo_streams_the_user_message() -> None:
    llm = EchoLLM()
    out = [d async for d in llm.stream([Message("user", "hi there")])]
    assert "".join(out) == "You said: hi there"
