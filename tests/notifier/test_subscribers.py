"""The subscriber store and CSV import."""

from __future__ import annotations

import pytest

from notifier.csv_import import ImportRefused
from notifier.runtime import Runtime
from notifier.subscribers import parse_csv
from tests.conftest import subscriber_counts

GOOD = """channel,address,name,areas,topics,language
line,U0123456789abcdef0123456789abcdef,,nerima oizumi,garbage events,ja
email,Taro@Example.JP,山田太郎,,,en
print,東京都練馬区豊玉北6-12-1,練馬花子,nerima,,easy
"""


async def test_import_then_import_again_makes_no_duplicates(runtime: Runtime) -> None:
    store = runtime.subscribers
    first = await store.save(parse_csv(GOOD, store))
    assert [created for _, created in first] == [True, True, True]
    again = await store.save(parse_csv(GOOD.replace("garbage events", "tax"), store))
    assert [created for _, created in again] == [False, False, False]
    assert [sid for sid, _ in first] == [sid for sid, _ in again]
    assert await subscriber_counts(runtime) == {"line": 1, "email": 1, "print": 1}
    line_id = first[0][0]
    sub = await store.get(line_id)
    assert sub is not None and sub.topics == ["tax"] and sub.areas == ["nerima", "oizumi"]
    # the old topic choices are gone from the index
    assert await runtime.redis.zscore(runtime.keys.by_topic("garbage"), line_id) is None
    assert await runtime.redis.zscore(runtime.keys.by_topic("tax"), line_id) is not None


async def test_email_addresses_are_found_whatever_their_case(runtime: Runtime) -> None:
    store = runtime.subscribers
    await store.save(parse_csv(GOOD, store))
    assert await store.find("email", "taro@example.jp") is not None


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("fax,123,,,,ja", "line 3: channel:"),
        ("email,not-an-address,,,,ja", "line 3: address: not a valid email address"),
        ("line,U123,,,,ja", "line 3: address: a LINE user id"),
        ("line,U0123456789abcdef0123456789abcdee,,shibuya,,ja", "line 3: areas: unknown area"),
        ("line,U0123456789abcdef0123456789abcdee,,,weather,ja", "line 3: topics: unknown topic"),
        ("line,U0123456789abcdef0123456789abcdee,,,,fr", "line 3: language: unknown language"),
        ("print,練馬区,,,,ja", "line 3: name:"),
        ("line,U0123456789abcdef0123456789abcdee", "line 3: 2 columns, expected 6"),
        ("line,U0123456789abcdef0123456789abcdef,,,,ja", "the same line address as line 2"),
    ],
)
async def test_a_bad_row_is_named_by_line_and_nothing_is_imported(
    runtime: Runtime, row: str, message: str
) -> None:
    text = "channel,address,name,areas,topics,language\n"
    text += "line,U0123456789abcdef0123456789abcdef,,,,ja\n" + row + "\n"
    with pytest.raises(ImportRefused) as caught:
        parse_csv(text, runtime.subscribers)
    assert any(message in e for e in caught.value.errors), caught.value.errors
    assert not any("not-an-address" in e for e in caught.value.errors)  # no personal data
    assert await subscriber_counts(runtime) == {"line": 0, "email": 0, "print": 0}


def test_a_wrong_header_is_refused(runtime: Runtime) -> None:
    with pytest.raises(ImportRefused) as caught:
        parse_csv("address,channel\nx,line\n", runtime.subscribers)
    assert caught.value.errors == [
        "line 1: the header must be channel,address,name,areas,topics,language"
    ]


async def test_delete_removes_every_trace(runtime: Runtime) -> None:
    store = runtime.subscribers
    ((sid, _), *_) = await store.save(parse_csv(GOOD, store))
    assert await store.delete(sid)
    assert await store.get(sid) is None
    assert await store.find("line", "U0123456789abcdef0123456789abcdef") is None
    for key in (
        runtime.keys.by_channel("line"),
        runtime.keys.by_area("nerima"),
        runtime.keys.by_topic("garbage"),
        runtime.keys.by_language("ja"),
    ):
        assert await runtime.redis.zscore(key, sid) is None
    assert not await store.delete(sid)


async def test_audience_is_channel_and_areas_and_topics_by_language(runtime: Runtime) -> None:
    store = runtime.subscribers

    async def sub(address: str, **choices: object) -> str:
        ((sid, _),) = await store.save(
            [store.validate({"channel": "line", "address": address, **choices})]
        )
        return sid

    nerima = await sub("U" + "1" * 32, areas=["nerima"])
    whole_ward = await sub("U" + "2" * 32, language="en")
    oizumi_garbage = await sub("U" + "3" * 32, areas=["oizumi"], topics=["garbage"])
    oizumi_events = await sub("U" + "4" * 32, areas=["oizumi"], topics=["events"])
    await sub("U" + "5" * 32, areas=["shakujii"])
    await store.save([store.validate({"channel": "email", "address": "a@example.jp"})])

    found = await store.audience("line", ["nerima", "oizumi"], ["garbage"])
    assert found.by_language == {"ja": {nerima, oizumi_garbage}, "en": {whole_ward}}
    # an alert ignores topic choices
    found = await store.audience("line", ["oizumi"], None)
    assert found.by_language == {"ja": {oizumi_garbage, oizumi_events}, "en": {whole_ward}}
    # a whole-ward notice reaches every area
    assert (await store.audience("line", [], ["garbage"])).size == 4
    assert (await store.audience("email", [], ["garbage"])).size == 1
    # the scratch keys are gone
    assert [k async for k in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}tmp:*")] == []
