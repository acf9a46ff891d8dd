"""Email messages: headers, encodings and parts, checked by parsing them back; a batch
sent again mails no one twice, and the record of who was mailed survives Redis going away."""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from channels.base import Batch, Context, Recipient, RetryableError
from channels.email import MAILED_TTL, EmailChannel, Ledger
from notifier.config import Settings
from notifier.keys import Keys
from notifier.metrics import Metrics
from notifier.models import Announcement
from notifier.render import Templates
from notifier.runtime import Runtime
from tests.conftest import announcement, email_settings
from tests.redis_process import RedisProcess
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
    assert "登録された地域と分野に合わせてお送りしています" in text.get_content()
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


async def test_the_record_of_who_was_mailed_outlives_a_redis_restart(tmp_path: Path) -> None:
    """The 250s of a moment when Redis is away are kept in the worker and written once it
    is back: a retry after the restart mails none of them again."""
    server = RedisProcess(tmp_path / "redis")
    server.start()
    client = Redis.from_url(server.url)
    keys = Keys("t:")
    unconfirmed = Metrics().email_unconfirmed
    try:
        ledger = Ledger(client, keys, patience=20, unconfirmed=unconfirmed)
        server.shutdown()
        writes = [ledger.add("n1", f"s{i}") for i in range(3)]
        await asyncio.sleep(0.5)  # the write is being tried again meanwhile
        assert not writes[0].done()
        server.start()
        await asyncio.gather(*writes)
        mailed = await client.smembers(keys.mailed("n1"))
        assert mailed == {b"s0", b"s1", b"s2"}
        assert 0 < await client.ttl(keys.mailed("n1")) <= MAILED_TTL
        assert unconfirmed._value.get() == 0
    finally:
        await client.aclose()
        server.stop()


async def test_a_record_no_replica_confirms_is_counted(tmp_path: Path) -> None:
    """Under Sentinel a record waits for a replica (WAIT); with none there, the addresses
    are counted as ones a failover could mail twice, and still written on the master."""
    server = RedisProcess(tmp_path / "redis")
    server.start()
    client = Redis.from_url(server.url)
    keys = Keys("t:")
    unconfirmed = Metrics().email_unconfirmed
    try:
        ledger = Ledger(client, keys, replicas=1, replica_timeout=0.05, unconfirmed=unconfirmed)
        await asyncio.gather(*[ledger.add("n1", f"s{i}") for i in range(4)])
        assert await client.scard(keys.mailed("n1")) == 4
        assert unconfirmed._value.get() == 4
    finally:
        await client.aclose()
        server.stop()


async def test_a_record_that_cannot_be_written_in_time_fails_the_batch_and_is_counted(
    tmp_path: Path,
) -> None:
    server = RedisProcess(tmp_path / "redis")
    server.start()
    client = Redis.from_url(server.url, socket_connect_timeout=0.2)
    unconfirmed = Metrics().email_unconfirmed
    try:
        ledger = Ledger(client, Keys("t:"), patience=0.3, unconfirmed=unconfirmed)
        server.shutdown()
        with pytest.raises(RedisError):
            await asyncio.gather(ledger.add("n1", "s1"), ledger.add("n1", "s2"))
        assert unconfirmed._value.get() == 2
    finally:
        await client.aclose()
        server.stop()


def test_the_mail_keeps_line_breaks_names_no_topic_and_speaks_each_language(
    settings: Settings,
) -> None:
    """The HTML part keeps the body's single line breaks; the footer names no topic (the
    resident may have chosen them all) at 16 px; each language its own words."""
    templates = Templates(settings)
    body = "一行目\n二行目\n\n次の段落"
    shown = Announcement.model_validate(
        announcement(
            body=body,
            topics=["garbage"],
            translations={"en": {"title": "Bulky waste", "body": "Line one\nLine two"}},
        ),
        context={"ward": settings.ward},
    )
    shown.id, shown.received_at = "n1", datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    ja = EmailChannel.compose(templates, shown, "ja")
    assert "<p>一行目<br>二行目</p>" in ja["html"] and "<p>次の段落</p>" in ja["html"]
    assert "ごみ" not in ja["html"].split("<hr>")[1]
    assert 'font-size: 16px; color: #333;">' in ja["html"]
    en = EmailChannel.compose(templates, shown, "en")
    assert "<p>Line one<br>Line two</p>" in en["html"]
    assert 'lang="en"' in en["html"] and "Change your areas, topics or language" in en["html"]
    assert en["subject"] == "[Nerima City] Bulky waste"
    assert "Issued Thu, Nov 26, 9:00 a.m." in en["text"]
    assert "Unsubscribe: " in en["text"] and "あ" not in en["text"]
    ko = EmailChannel.compose(templates, shown, "ko")
    assert 'lang="ko"' in ko["html"] and "수신 거부" in ko["html"]
    assert ko["subject"].startswith("[네리마구] ")
