"""Email messages: headers, encodings and parts, checked by parsing them back."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from channels.base import Batch, Context, Recipient
from channels.email import EmailChannel
from notifier.models import Announcement
from notifier.runtime import Runtime
from tests.conftest import announcement


async def test_message_is_well_formed_japanese_mail(runtime: Runtime) -> None:
    settings = runtime.settings
    notice = Announcement.model_validate(
        announcement(url="https://www.city.nerima.tokyo.jp/"), context={"ward": settings.ward}
    )
    notice.id, notice.received_at = "n1", datetime(2026, 11, 26, tzinfo=UTC)
    content = EmailChannel.compose(runtime.templates, notice, "ja")
    channel = EmailChannel(Context(settings, runtime.redis, runtime.keys, runtime.metrics))
    batch = Batch(
        "n1", "announcement", "email", "ja", 0, (Recipient("s1", "hanako@example.jp"),), content
    )
    raw = channel.message(channel.skeleton(batch), batch, batch.recipients[0], "tok-123")
    raw.decode("ascii")  # every header and body line is 7-bit: encoded words and base64
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "【練馬区】粗大ごみの収集日が変わります"
    assert b"=?utf-8?" in raw.split(b"\n\n", 1)[0]
    assert msg["To"] == "hanako@example.jp"
    assert msg["Message-ID"].startswith("<") and "n1.s1" in msg["Message-ID"]
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content_charset() == "utf-8"
    assert "粗大ごみの収集日が変わります" in text.get_content()
    assert '<a href="https://www.city.nerima.tokyo.jp/">' in html.get_content()
    assert "登録された方にお送りしています" in text.get_content()
    link = f"{settings.public_url}/unsubscribe/tok-123"
    assert (
        msg["List-Unsubscribe"]
        == f"<{link}>, <mailto:notifier@localhost?subject=unsubscribe%20tok-123>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link in text.get_content() and f'href="{link}"' in html.get_content()
    assert "%%" not in text.get_content() + html.get_content()
