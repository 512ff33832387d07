"""Tests of avatarkit-shout, using the fixtures and checks avatarkit ships for plugin authors."""

import pytest

import avatarkit
from avatarkit.testing import check_renderer


def test_registered_through_its_entry_point(provider_registry: avatarkit.ProviderRegistry) -> None:
    spec = provider_registry.get("renderer", "shout")
    assert spec.source.distribution == "avatarkit-shout"


async def test_follows_the_renderer_contract(provider_registry: avatarkit.ProviderRegistry) -> None:
    renderer = provider_registry.get("renderer", "shout").create(seconds_per_word=0.01)
    await check_renderer(renderer)


async def test_a_session_shouts_the_reply(
    provider_registry: avatarkit.ProviderRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    session = avatarkit.load_session(
        {
            "llm": {"provider": "fake", "replies": ["Hello there. How are you?"]},
            "renderer": {"provider": "shout", "suffix": "!!"},
        },
        registry=provider_registry,
    )
    async with session:
        await session.send("hi")
    assert capsys.readouterr().out == "HELLO THERE!!\nHOW ARE YOU!!\n"


def test_a_typo_in_the_options_is_an_error(provider_registry: avatarkit.ProviderRegistry) -> None:
    with pytest.raises(avatarkit.ConfigError, match="did you mean 'suffix'"):
        avatarkit.load_session(
            {"llm": "fake", "renderer": {"provider": "shout", "sufix": "?"}},
            registry=provider_registry,
        )
