"""LINE message building: LINE's limits, counted as LINE counts them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from channels.line import (
    ALT_TEXT_LIMIT,
    BUBBLE_LIMIT,
    LineChannel,
    fit_text,
    json_size,
    retry_key,
    utf16_len,
)
from notifier.config import Settings
from notifier.models import Announcement
from notifier.render import Templates
from tests.conftest import announcement
from tests.line_spec import errors


def notice(settings: Settings, **fields: object) -> Announcement:
    made = Announcement.model_validate(announcement(**fields), context={"ward": settings.ward})
    made.id, made.received_at = "n1", datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    return made


def test_utf16_length_counts_astral_characters_twice() -> None:
    assert utf16_len("練馬") == 2
    assert utf16_len("🌸") == 2
    assert utf16_len("𠮷野家") == 4


def test_fit_text_keeps_the_tail_and_never_splits_a_surrogate_pair() -> None:
    tail = "\nhttps://www.city.nerima.tokyo.jp/"
    text = "🌸" * 3000  # 6000 UTF-16 units
    fitted = fit_text(text, 5000, tail)
    assert utf16_len(fitted) <= 5000
    assert fitted.endswith("…" + tail)
    assert "\ufffd" not in fitted and fitted.encode("utf-16-le").decode("utf-16-le") == fitted
    assert fit_text("短い", 5000, tail) == "短い"


def test_a_long_announcement_fits_lines_limits_with_its_link(settings: Settings) -> None:
    # 5000 characters that JSON-escape to six bytes each, and four-byte ones in the title
    long = notice(
        settings,
        title="🌸" * 100,
        body="<" * 3000 + "練" * 2000,
        url="https://www.city.nerima.tokyo.jp/a",
    )
    content = LineChannel.compose(Templates(settings), long, "ja")
    (message,) = content["messages"]
    assert message["type"] == "flex"
    assert utf16_len(message["altText"]) <= ALT_TEXT_LIMIT
    assert json_size(message["contents"]) <= BUBBLE_LIMIT
    footer = message["contents"]["footer"]["contents"][0]["action"]
    assert footer == {
        "type": "uri",
        "label": "詳しく見る",
        "uri": "https://www.city.nerima.tokyo.jp/a",
    }
    assert errors({"to": ["U" + "0" * 32], **content}, "MulticastRequest") == []


def test_a_body_too_long_for_a_bubble_is_cut_and_points_to_the_link(settings: Settings) -> None:
    # no body intake takes is over 30 KB (four bytes a character at most): the cut stays
    # for a notice stored before the text rule, whose control characters take six bytes
    # each in JSON (\\u0007)
    huge = notice(settings, url="https://www.city.nerima.tokyo.jp/b")
    huge.body = "\a" * 5000
    (message,) = LineChannel.compose(Templates(settings), huge, "ja")["messages"]
    body = message["contents"]["body"]["contents"][1]["text"]
    assert json_size(message["contents"]) <= BUBBLE_LIMIT
    assert body.endswith("…\n（続きはリンク先へ）") and len(body) > 4000


def test_text_is_escaped_for_json_not_html(settings: Settings) -> None:
    tricky = notice(settings, title='"引用" & <タグ> \\ {{ x }}')
    (message,) = LineChannel.compose(Templates(settings), tricky, "ja")["messages"]
    assert message["contents"]["body"]["contents"][0]["text"] == '"引用" & <タグ> \\ {{ x }}'
    assert "footer" not in message["contents"]  # no url, no button


def test_the_english_translation_is_used_for_english_readers(settings: Settings) -> None:
    translated = notice(settings, translations={"en": {"title": "Water outage", "body": "B"}})
    (message,) = LineChannel.compose(Templates(settings), translated, "en")["messages"]
    texts = json.dumps(message, ensure_ascii=False)
    assert "Water outage" in texts and "Nerima City notice" in texts


def test_retry_keys_are_stable_per_batch_and_distinct_across_batches() -> None:
    assert retry_key("n1", "line", 0) == retry_key("n1", "line", 0)
    keys = {retry_key(n, "line", b) for n in ("n1", "n2") for b in range(100)}
    assert len(keys) == 200
    assert str(uuid.UUID(retry_key("n1", "line", 0))) == retry_key("n1", "line", 0)


def test_the_multicast_body_is_exactly_what_the_sdk_itself_would_send(settings: Settings) -> None:
    """The request reuses each message's JSON; the body must not differ by a byte."""
    from linebot.v3.messaging import Message, MulticastRequest

    from channels.line import Multicast, flex_message

    message = Message.from_dict(
        flex_message(Templates(settings), notice(settings, url="https://example.jp/"), "ja")
    )
    users = [f"U{i:032x}" for i in range(3)]
    ours = Multicast.construct(to=users, messages=[message], notification_disabled=False)
    theirs = MulticastRequest(to=users, messages=[message], notificationDisabled=False)
    assert ours.to_dict() == theirs.to_dict()
    assert ours.to_dict() == Multicast.construct(to=users, messages=[message]).to_dict() | {
        "notificationDisabled": False
    }
    assert errors(ours.to_dict(), "MulticastRequest") == []
