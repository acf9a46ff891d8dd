"""Every list of channels comes from the registry: a channel declared in one place (here, a
voice-call channel defined in this test) is taken by the API, cut by the dispatcher, sent
by its worker and counted in the notice's progress, with no other file changed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, TypedDict

import pytest

from channels import BaseChannel, channel_class, classes
from channels.base import Batch, Outcome
from notifier import channel_registry
from notifier.channel_registry import REGISTRY, ChannelSpec
from notifier.config import Settings
from notifier.models import AnyNotice
from notifier.render import Templates
from notifier.runtime import Runtime
from tests.conftest import Api, announcement, wait_for

VOICE = ChannelSpec(
    "voice",
    "tests.channels.test_registry:VoiceChannel",
    "電話（音声）",
    "subscribers",
    credentials=("line_channel_secret",),  # any setting: it is unset in the tests
    batch_size=2,
    address="phone",
)


class Call(TypedDict):
    script: str  # what the call reads out


class VoiceChannel(BaseChannel[Call]):
    spec = VOICE
    called: ClassVar[list[tuple[str, str]]] = []  # (number, script), as they were called

    @staticmethod
    def compose(templates: Templates, notice: AnyNotice, lang: str) -> Call:
        script = templates.env.from_string("{{ title }}。{{ body }}")
        return {"script": script.render(templates.context(notice, lang))}

    async def _send(self, batch: Batch) -> Outcome:
        script = self.content_of(batch)["script"]
        self.called.extend((number, script) for number in batch.recipients.addresses)
        return Outcome(sent=len(batch.recipients))


@pytest.fixture(autouse=True)
def voice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(REGISTRY, "voice", VOICE)
    VoiceChannel.called = []
    yield
    channel_class.cache_clear()  # forget the class: the next test's registry has no voice


def test_every_list_of_channels_is_the_registry() -> None:
    assert channel_registry.names() == ("line", "x", "email", "print", "voice")
    assert channel_registry.subscribed() == ("line", "email", "print", "voice")
    assert classes()["voice"] is VoiceChannel
    assert VoiceChannel.name == "voice" and VoiceChannel.audience == "subscribers"
    assert {name: cls.spec for name, cls in classes().items()} == REGISTRY


def test_settings_read_what_the_channel_declares(settings: Settings) -> None:
    assert settings.missing_credentials("voice") == ["NOTIFIER_LINE_CHANNEL_SECRET"]
    assert not settings.live("voice")
    assert VOICE.batch(settings) == 2
    assert channel_registry.spec("line").batch(settings) == settings.line_batch_size
    with pytest.raises(KeyError, match="no channel named 'fax'; known: line, x, email"):
        channel_registry.spec("fax")


def test_a_class_that_is_not_the_channel_it_is_declared_as_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(REGISTRY, "fax", VOICE.__class__("fax", VOICE.implementation, "", "public"))
    with pytest.raises(TypeError, match="is not the BaseChannel of 'fax'"):
        channel_class("fax")


async def test_a_channel_declared_once_is_subscribed_to_cut_and_sent(
    api: Api, runtime: Runtime, tokens: dict[str, str]
) -> None:
    numbers = ["+81339931111", "+81339932222", "+81339933333"]
    for number in numbers:
        sub = runtime.subscribers.validate(
            {"channel": "voice", "address": number, "areas": ["nerima"]}
        )
        await runtime.subscribers.save([sub])
    wrong = runtime.subscribers.validate
    with pytest.raises(ValueError, match="phone number"):
        wrong({"channel": "voice", "address": "03-3993-1111"})

    status, body = await api.call(
        "POST",
        "/api/announcements",
        tokens["staff"],
        json=announcement(channels=["voice"]),
    )
    assert status == 202, body
    notice_id = body["id"]

    async def done() -> dict[str, Any] | None:
        _, view = await api.call("GET", f"/api/announcements/{notice_id}", tokens["staff"])
        return view if view["status"] == "done" else None

    view = await wait_for(done)
    assert view["progress"]["voice"]["sent"] == 3
    assert sorted(n for n, _ in VoiceChannel.called) == numbers  # each once, in two batches
    assert {s for _, s in VoiceChannel.called} == {
        "粗大ごみの収集日が変わります。12月から粗大ごみの収集日が変わります。\n\n"
        "くわしくはホームページをご覧ください。"
    }
