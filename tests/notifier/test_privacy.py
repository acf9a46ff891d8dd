"""Personal data: a whole run's logs (every logger, DEBUG) and error answers name no one;
the export is admin-only and audited; `notifier rotate-key` re-seals everything."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from pathlib import Path

import aiohttp
import pytest

from notifier.config import Settings
from notifier.logs import JsonFormatter
from notifier.runtime import Runtime
from notifier.service import Service
from tests.conftest import SECRET_KEY, Api, announcement, line_settings, wait_for
from tests.fake_line import FakeLine
from tests.line_events import body_and_headers, follow, payload, unfollow
from tests.notifier.test_cli import env_for, notifier
from tests.notifier.test_pipeline import add, done, read_eml
from tests.notifier.web.test_console import Console

LINE_USER = "U" + "5" * 32
FOLLOWER = "U" + "6" * 32
EMAIL = "hanako.nerima@example.jp"
FORM_EMAIL = "taro.oizumi@example.jp"
NAME = "練馬花子"
POSTAL = "東京都練馬区豊玉北6-12-1"
COUNTER_NAME = "大泉太郎"
COUNTER_POSTAL = "東京都練馬区大泉町1-2-3"


@pytest.fixture
def settings(tmp_path: Path, prefix: str, fake_line: FakeLine) -> Settings:
    return line_settings(tmp_path, prefix, fake_line.url)


async def test_a_whole_run_logs_no_personal_data(
    api: Api,
    runtime: Runtime,
    service: Service,
    tokens: dict[str, str],
    fake_line: FakeLine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    base = f"http://127.0.0.1:{service.port}"
    answers: list[str] = []
    await add(runtime, channel="line", address=LINE_USER)
    await add(runtime, channel="email", address=EMAIL, name=NAME)
    status, body = await api.call(
        "POST",
        "/api/subscribers",
        tokens["staff"],
        {"channel": "print", "address": POSTAL, "name": NAME},
    )
    assert status == 201
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        # a resident follows on LINE, later leaves
        signed, headers = body_and_headers(
            runtime.settings.line_channel_secret.get_secret_value(),  # type: ignore[union-attr]
            payload(follow(FOLLOWER, fake_line.issue_reply_token())),
        )
        async with http.post(base + "/line/webhook", data=signed, headers=headers) as r:
            assert r.status == 200
        # another subscribes by the form and confirms
        async with http.post(base + "/subscribe", data={"address": FORM_EMAIL}) as r:
            assert r.status == 200
        (mail,) = (runtime.settings.outbox_dir / "email").glob("confirm-*.eml")
        text = read_eml(mail).get_body(("plain",)).get_content()  # type: ignore[union-attr]
        link = re.search(r"/subscribe/confirm/[\w-]+", text)
        assert link is not None
        async with http.get(base + link.group()) as r:
            assert r.status == 200
        # staff register a resident at the counter, in the console
        admin = Console(http, base)
        await admin.sign_in(token=tokens["admin"])
        await admin.get("/console/subscribers")
        resident = {"name": COUNTER_NAME, "address": COUNTER_POSTAL}
        assert (await admin.post("/console/subscribers/print", resident))[0] == 303
        # bad input that carries personal data: the answer must not echo it
        for bad in (
            {"channel": "email", "address": "hanako@@example.jp", "name": NAME},
            {"channel": "line", "address": "not-a-line-id", "name": NAME},
        ):
            status, error = await api.call("POST", "/api/subscribers", tokens["admin"], bad)
            assert status == 400
            answers.append(json.dumps(error, ensure_ascii=False))
        async with http.post(base + "/subscribe", data={"address": "taro@@example.jp"}) as r:
            # the form comes back filled in for its resident to fix; its messages name no one
            messages = re.findall(r'class="error"[^>]*>([^<]*)<', await r.text())
            assert r.status == 400 and messages
            answers.extend(messages)
        _, body = await api.call("POST", "/api/announcements", tokens["staff"], announcement())
        await done(api, tokens["staff"], body["id"])
        unfollowed, headers = body_and_headers(
            runtime.settings.line_channel_secret.get_secret_value(),  # type: ignore[union-attr]
            payload(unfollow(FOLLOWER)),
        )
        async with http.post(base + "/line/webhook", data=unfollowed, headers=headers) as r:
            assert r.status == 200

    async def line_delivered() -> bool:
        return bool(fake_line.messages_for(LINE_USER))

    await wait_for(line_delivered)
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    assert len(lines) > 20 and any('"event": "batch.send"' in line for line in lines)
    audit = json.dumps(await runtime.audit.recent(1000), ensure_ascii=False)
    assert "line.follow" in audit and "email.subscribe" in audit and "subscriber.create" in audit
    text = "\n".join([*lines, *answers, audit])
    used = [
        LINE_USER,
        FOLLOWER,
        EMAIL,
        FORM_EMAIL,
        NAME,
        POSTAL,
        COUNTER_NAME,
        COUNTER_POSTAL,
        "hanako@@example.jp",
        "taro@@example.jp",
        "not-a-line-id",
        *tokens.values(),
    ]
    for value in used:
        assert value not in text, value
    for value in (EMAIL, FORM_EMAIL, NAME, POSTAL, LINE_USER):  # nor in Redis, in the clear
        async for key in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}*"):
            if await runtime.redis.type(key) == b"hash":
                dump = json.dumps(
                    {
                        k.decode(): v.decode(errors="replace")
                        for k, v in (await runtime.redis.hgetall(key)).items()
                    },
                    ensure_ascii=False,
                )
                assert value not in dump, (value, key)


async def test_export_needs_an_admin_token_and_is_audited(
    runtime: Runtime, tokens: dict[str, str], tmp_path: Path, prefix: str
) -> None:
    await add(runtime, channel="email", address=EMAIL, name=NAME, areas=["nerima"])
    await add(runtime, channel="line", address=LINE_USER, language="en")
    env = env_for(prefix, tmp_path, NOTIFIER_SECRET_KEY=SECRET_KEY)
    refused = notifier({**env, "NOTIFIER_TOKEN": tokens["staff"]}, "subscribers", "export")
    assert refused.returncode == 2 and EMAIL not in refused.stdout
    out = tmp_path / "export.csv"
    made = notifier(
        {**env, "NOTIFIER_TOKEN": tokens["admin"]}, "subscribers", "export", "--output", str(out)
    )
    assert made.returncode == 0, made.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[0] == ["channel", "address", "name", "areas", "topics", "language"]
    assert sorted(rows[1:]) == [
        ["email", EMAIL, NAME, "nerima", "", "ja"],
        ["line", LINE_USER, "", "", "", "en"],
    ]
    again = notifier(
        {**env, "NOTIFIER_TOKEN": tokens["admin"]}, "subscribers", "export", "--output", str(out)
    )
    assert again.returncode == 1  # never over an existing file
    entries = [(e["who"], e["action"], e["outcome"]) for e in await runtime.audit.recent()]
    assert ("admin-tester", "subscribers.export", "ok") in entries
    assert any(e[1:] == ("subscribers.export", "refused") for e in entries)


async def test_rotate_key_reseals_everything_under_the_new_key(
    runtime: Runtime, tmp_path: Path, prefix: str
) -> None:
    people = {"email": EMAIL, "line": LINE_USER, "print": POSTAL}
    ids = {c: await add(runtime, channel=c, address=a, name=NAME) for c, a in people.items()}
    before = await runtime.redis.hgetall(runtime.keys.contacts)
    env = env_for(prefix, tmp_path, NOTIFIER_SECRET_KEY=SECRET_KEY)
    assert notifier(env, "rotate-key").returncode == 2  # no previous key named
    new_key = "a-new-secret-key-for-the-ward"
    rotated = notifier(
        {**env, "NOTIFIER_SECRET_KEY": new_key, "NOTIFIER_SECRET_KEY_PREVIOUS": SECRET_KEY},
        "rotate-key",
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "re-sealed 3 subscribers" in rotated.stdout
    after = await runtime.redis.hgetall(runtime.keys.contacts)
    assert set(after) == set(before) and all(after[k] != before[k] for k in after)

    from notifier.subscribers import SubscriberStore

    renewed = Settings.model_validate({**runtime.settings.model_dump(), "secret_key": new_key})
    store = SubscriberStore(runtime.redis, runtime.keys, renewed)
    for channel, address in people.items():  # found by the new key's hash, opened by the new key
        assert await store.find(channel, address) == ids[channel]
        found = await store.get(ids[channel])
        assert found is not None and found.address == address and found.name == NAME
    with pytest.raises(ValueError, match="another NOTIFIER_SECRET_KEY"):
        await runtime.subscribers.get(ids["email"])  # the old key alone opens nothing now
    assert len(await runtime.redis.hgetall(runtime.keys.subscriber_lookup)) == 3
    (entry, *_) = await runtime.audit.recent()
    assert (entry["action"], entry["outcome"], entry["count"]) == ("rotate-key", "ok", "3")


async def test_accounts_are_added_listed_and_removed_with_their_sessions(
    runtime: Runtime, tmp_path: Path, prefix: str
) -> None:
    env = env_for(prefix, tmp_path, NOTIFIER_SECRET_KEY=SECRET_KEY)
    short = notifier(env, "account", "add", "yamada", "--role", "staff", stdin="short\n")
    assert short.returncode == 2 and "12 characters" in short.stderr
    password = "a long enough password"
    made = notifier(env, "account", "add", "yamada", "--role", "staff", stdin=password + "\n")
    assert made.returncode == 0, made.stderr
    assert notifier(env, "account", "list").stdout == "yamada\tstaff\n"
    who = await runtime.accounts.check("yamada", password)
    assert who is not None and who.role == "staff"
    stored = json.dumps(
        {
            k.decode(): v.decode()
            for k, v in (await runtime.redis.hgetall(runtime.keys.accounts)).items()
        }
    )
    assert password not in stored and "$argon2id$" in stored
    assert notifier(env, "account", "remove", "yamada").returncode == 0
    assert await runtime.accounts.check("yamada", password) is None
    actions = [(e["action"], e["outcome"]) for e in await runtime.audit.recent()]
    assert ("account.add", "ok") in actions and ("account.remove", "ok") in actions
    assert password not in json.dumps(await runtime.audit.recent())
