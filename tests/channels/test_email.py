"""Email messages: headers, encodings and parts, checked by parsing them back; a batch
sent again mails no one twice."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest

from channels.base import Batch, Context, Recipient, RetryableError
from channels.email import EmailChannel
from notifier.models import Announcement
from notifier.runtime import Runtime
from tests.conftest import announcement, email_settings
from tests.smtp_sink import SmtpSink


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


async def test_a_batch_sent_again_mails_no_one_twice(tmp_path: Path, prefix: str) -> None:
    with SmtpSink() as sink:
        settings = email_settings(tmp_path, prefix, sink.port)
        rt = Runtime.open(settings)
        channel = EmailChannel(Context(settings, rt.redis, rt.keys, rt.metrics))
        try:
            notice = Announcement.model_validate(announcement(), context={"ward": settings.ward})
            notice.id, notice.received_at = "n2", datetime(2026, 11, 26, tzinfo=UTC)
            content = EmailChannel.compose(rt.templates, notice, "ja")
            people = tuple(Recipient(f"s{i}", f"r{i}@example.jp") for i in range(3))
            batch = Batch("n2", "announcement", "email", "ja", 0, people, content)
            sink.reject["r1@example.jp"] = 450  # busy: try later
            with pytest.raises(RetryableError):
                await channel.send(batch)
            del sink.reject["r1@example.jp"]
            outcome = await channel.send(batch)  # the retry: only r1 is left to mail
        finally:
            await channel.close()
            await rt.close()
    assert outcome.sent == 3 and not outcome.failed
    received = sorted((e.rcpt_tos[0], e.message()["Message-ID"]) for e in sink.envelopes)
    domain = settings.mail_from.rpartition("@")[2] if settings.mail_from else ""
    assert received == [(f"r{i}@example.jp", f"<n2.s{i}@{domain}>") for i in range(3)]
