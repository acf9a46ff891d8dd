"""Nothing intake accepts fails later: any title, body and link the models take renders
on every channel into what the channel itself takes (LINE's OpenAPI document, X's
twitter-text, a strictly parsed email, well-formed print HTML)."""

from __future__ import annotations

import asyncio
import email.policy
import json
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from linebot.v3.messaging import Message
from pydantic import ValidationError
from twitter_text import parse_tweet

from channels.base import Batch, Context, Recipient
from channels.email import EmailChannel
from channels.line import ALT_TEXT_LIMIT, BUBBLE_LIMIT, LineChannel, json_size, utf16_len
from channels.print import PrintChannel
from channels.x import XChannel
from notifier.models import Alert, Announcement, AnyNotice
from notifier.render import Templates, alert_marks, bracketed
from notifier.runtime import Runtime
from tests.conftest import make_settings
from tests.line_spec import errors

RUNS = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DRAWN = {"drawn": 0, "refused": 0}  # notices drawn, and those the models refused
RECIPIENT = Recipient("s1", "hanako@example.jp")
TOKEN = "tok-123"

# what breaks templates, markup, headers and counting, mixed into arbitrary text
MARKUP = ["<", ">", "&", '"', "'", "\\", "&amp;", "&lt;b&gt;", "<script>alert(1)</script>"]
TEMPLATES = ['"><img src=x>', "{{ title }}", "{% if x %}", "}}", "%", "%s", "%%TO%%"]
STAND_INS = ["%%SUBJECT%%", "%%DATE%%", "%%TOKEN%%", "%%UNSUBSCRIBE_URL%%"]
HEADERS = ["=?utf-8?q?x?=", "=?", "?=", "(1/1)", " (2/3)", "…", "#防災", "@nerima"]
LINKS = ["https://www.city.nerima.tokyo.jp/", "city.nerima.jp", "a.b", "1.5"]
EMOJI = ["🌸", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "🇯🇵", "\u2764\ufe0f"]
FLAG = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
SPACES = ["\u3000", "\u00a0", "  ", "\u200b", "\u00ad"]
WORDS = ["𠮷", "e\u0301", "葛\U000e0100", "練馬区", "石神井", "光が丘", "避難指示", "Nerima", "！"]
FRAGMENTS = [*MARKUP, *TEMPLATES, *STAND_INS, *HEADERS, *LINKS, *EMOJI, FLAG, *SPACES, *WORDS]
LINE_ENDS = ["\n", "\n\n", "\r\n", "\r", "\t", "\u2028", "\u2029"]
# characters the rule lets through in most cases: every category but controls,
# surrogates and the line and paragraph separators (the model refuses the few others)
CHARACTERS = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))


def now_and_then(
    rare: st.SearchStrategy[Any], usual: st.SearchStrategy[Any], one_in: int
) -> st.SearchStrategy[Any]:
    """``rare`` one time in ``one_in``, ``usual`` otherwise (one_of would draw each half
    the time, and integers favour their bounds)."""
    return st.sampled_from([False] * (one_in - 1) + [True]).flatmap(
        lambda rarely: rare if rarely else usual
    )


def text(extra: list[str], max_pieces: int) -> st.SearchStrategy[str]:
    piece = st.one_of(
        st.text(CHARACTERS, min_size=1, max_size=6), st.sampled_from(FRAGMENTS + extra)
    )
    mostly_accepted = st.lists(piece, min_size=1, max_size=max_pieces).map("".join)
    anything = st.text(min_size=1, max_size=max_pieces)  # the model may well refuse it
    return now_and_then(anything, mostly_accepted, 8)


TITLES = text([], 25).map(lambda s: s[:100])
SHORT_BODIES = text(LINE_ENDS, 60)
LONG_BODIES = st.tuples(SHORT_BODIES, st.integers(1000, 5000)).map(
    lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]]  # a thread, a cut to fit a link
)
BODIES = now_and_then(LONG_BODIES, SHORT_BODIES, 4)

HOSTS = st.sampled_from(
    [
        "www.city.nerima.tokyo.jp",
        "example.com",
        "xn--eckwd4c7c.xn--zckzah",
        "a.bc",  # a domain twitter-text does not know: X counts the link as text
        "city.nerima.tokyo.jp:8443",
        "www.city.nerima.tokyo.jp",
        "example.com",
    ]
)
NOT_HOSTS = st.sampled_from(["1.2.3.4", "localhost", "user@example.com", "[::1]", "a..jp", ""])
URL_CHARS = st.sampled_from(
    [*"abcXYZ019-._~!$&()*+,;=:@/?", "%E7%B7%B4", "%41", "/a/b.html", "?q=1&r=2"]
)
NOT_URL_CHARS = st.sampled_from(['"', "'", "<", ">", "\\", " ", "練", "\n", "{", "|", "^", "%zz"])
PATHS = st.one_of(
    st.lists(URL_CHARS, max_size=40).map("".join),
    st.tuples(st.lists(URL_CHARS, min_size=1, max_size=6).map("".join), st.integers(1, 330)).map(
        lambda t: (t[0] * t[1])[: 1010 - 30]  # now and then over LINE's limit with its host
    ),
)


@st.composite
def urls(draw: st.DrawFn) -> str | None:
    if draw(now_and_then(st.just(True), st.just(False), 4)):
        return None
    scheme = draw(
        now_and_then(st.sampled_from(["http", "javascript", "HTTPS"]), st.just("https"), 12)
    )
    host = draw(now_and_then(NOT_HOSTS, HOSTS, 12))
    path = draw(PATHS)
    if draw(now_and_then(st.just(True), st.just(False), 8)):  # a character RFC 3986 refuses
        at = draw(st.integers(0, len(path)))
        path = path[:at] + draw(NOT_URL_CHARS) + path[at:]
    fragment = draw(st.sampled_from(["", "#top", "#a/b?c", "", "#a#b"]))
    return f"{scheme}://{host}/{path}{fragment}"


@st.composite
def translations(draw: st.DrawFn) -> dict[str, dict[str, str]]:
    langs = draw(st.lists(st.sampled_from(["en", "easy", "zh", "ko"]), unique=True, max_size=2))
    return {lang: {"title": draw(TITLES), "body": draw(SHORT_BODIES)} for lang in langs}


@st.composite
def notices(draw: st.DrawFn, ward: Any) -> AnyNotice:
    data: dict[str, Any] = {
        "title": draw(TITLES),
        "body": draw(BODIES),
        "areas": draw(st.lists(st.sampled_from(ward.area_codes), unique=True, max_size=2)),
        "translations": draw(translations()),
    }
    url = draw(urls())
    if url is not None:
        data["url"] = url
    DRAWN["drawn"] += 1
    try:
        if draw(st.booleans()):
            data["topics"] = draw(
                st.lists(st.sampled_from(ward.topic_codes), unique=True, min_size=1, max_size=3)
            )
            notice: AnyNotice = Announcement.model_validate(data, context={"ward": ward})
        else:
            kind = draw(st.sampled_from(["alert", "update", "cancel"]))
            data.update(
                severity=draw(st.sampled_from(["advisory", "warning", "emergency"])),
                type=kind,
                drill=draw(st.booleans()),
                references=None if kind == "alert" else "a0",
            )
            notice = Alert.model_validate(data, context={"ward": ward})
    except ValidationError:
        DRAWN["refused"] += 1
        reject()  # not what intake accepts: not this test's business
    notice.id, notice.received_at = "n1", datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    return notice


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """Templates and an email channel for the module: nothing here touches Redis."""
    built = make_settings(
        tmp_path_factory.mktemp("render"),
        "test:render:",
        mail_from="oshirase@city.nerima.example.jp",
        public_url="https://notices.city.nerima.example.jp",
    )
    rt = Runtime.open(built)
    yield rt
    asyncio.run(rt.close())


@pytest.fixture(scope="module")
def mail(runtime: Runtime) -> EmailChannel:
    return EmailChannel(Context(runtime.settings, runtime.redis, runtime.keys, runtime.metrics))


def languages(notice: AnyNotice) -> list[str]:
    return ["ja", *notice.translations]


def unprintable(value: str) -> list[str]:
    """What no channel should carry: controls but the line feed, surrogates, direction
    controls, U+FEFF, noncharacters."""
    return [
        f"U+{ord(c):04X}"
        for c in value
        if (unicodedata.category(c) in ("Cc", "Cs") and c != "\n")
        or c in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
        or c == "\ufeff"
        or (ord(c) & 0xFFFE) == 0xFFFE
        or 0xFDD0 <= ord(c) <= 0xFDEF
    ]


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def uri_actions(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if value.get("type") == "uri":
            yield value
        for item in value.values():
            yield from uri_actions(item)
    elif isinstance(value, list):
        for item in value:
            yield from uri_actions(item)


# RFC 3986's generic URI grammar (appendix A), as the check that a link is a URI at all
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})"
RFC3986 = re.compile(
    rf"[A-Za-z][A-Za-z0-9+\-.]*:"
    rf"//(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{{2}})*@)?"
    rf"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{{2}})*(?::[0-9]*)?"
    rf"(?:/{_PCHAR}*)*(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
)


@RUNS
@given(data=st.data())
def test_line_takes_every_message_of_every_notice(runtime: Runtime, data: st.DataObject) -> None:
    notice = data.draw(notices(runtime.settings.ward))
    if notice.url is not None:
        assert RFC3986.fullmatch(notice.url) and notice.url.startswith("https://")
    for lang in languages(notice):
        content = LineChannel.compose(runtime.templates, notice, lang)
        for message in content["messages"]:
            assert errors(message, "Message") == []
            Message.from_dict(message)  # the SDK's own models take it (the live path)
            assert utf16_len(message["altText"]) <= ALT_TEXT_LIMIT
            assert json_size(message["contents"]) <= BUBBLE_LIMIT
            json.dumps(message, ensure_ascii=False).encode("utf-8")
            ward = runtime.settings.ward
            for action in uri_actions(message):  # the notice's link, or the ward's own
                assert action["uri"] in {notice.url, ward.tel, ward.hazard_map_url}
                assert len(action["uri"]) <= 1000
            assert all(unprintable(s) == [] for s in strings(message))
            title = message["contents"]["body"]["contents"][0]["text"]
            assert title == notice.title_in(lang)
        body = {"to": [f"U{i:032x}" for i in range(3)], "messages": content["messages"]}
        assert errors(body, "MulticastRequest") == []


@settings(RUNS, max_examples=50)  # twitter-text weighs threads, milliseconds a call
@given(data=st.data())
def test_x_takes_every_post(runtime: Runtime, data: st.DataObject) -> None:
    notice = data.draw(notices(runtime.settings.ward))
    posts: list[str] = XChannel.compose(runtime.templates, notice, "ja")["posts"]
    assert 1 <= len(posts) <= runtime.settings.x_max_posts
    for post in posts:
        assert parse_tweet(post).valid, post
        assert unprintable(post) == []
    if len(posts) == 1:
        rendered = runtime.templates.render(
            "x/announcement.txt",
            notice,
            "ja",
            body=notice.body,
            hashtags=runtime.settings.x_hashtags,
        )
        assert not posts[0].endswith(" (1/1)") or rendered.endswith(" (1/1)")
    else:
        for i, post in enumerate(posts, start=1):
            assert post.endswith(f" ({i}/{len(posts)})")


class _Html(HTMLParser):
    """The tags of a document, and the text of the elements it is asked about, less the
    furigana readings above the words (``.rt``)."""

    def __init__(self, wanted: set[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.texts: dict[str, list[str]] = {}
        self._open: list[tuple[str, bool]] = []  # (tag, a reading)
        self._wanted = wanted

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("img", "meta", "br", "hr"):
            return
        self._open.append((tag, ("class", "rt") in attrs))
        if tag in self._wanted:
            self.texts.setdefault(tag, []).append("")

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if any(reading for _, reading in self._open):
            return
        for tag, _ in self._open:
            if tag in self._wanted:
                self.texts[tag][-1] += data


def parsed(html: str, *wanted: str) -> _Html:
    parser = _Html(set(wanted))
    parser.feed(html)
    parser.close()
    assert unprintable(html) == []
    return parser


# the tags the print templates write: a tag beyond them came from a notice's text
PRINT_TAGS = {"h1", "h2", "h3", "p", "br", "section", "div", "img", "span"}  # br: a line break kept
FLYER_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "p", "br", "div", "span"}


@RUNS
@given(data=st.data(), furigana=st.booleans())
def test_print_writes_every_title_as_text(
    runtime: Runtime, data: st.DataObject, furigana: bool
) -> None:
    notice = data.draw(notices(runtime.settings.ward))
    shown = runtime.settings.model_copy(update={"print_furigana": furigana})
    templates = Templates(shown)
    content = PrintChannel.compose(templates, notice, "ja")
    if isinstance(notice, Alert):
        assert set(content["flyers"]) == set(runtime.settings.ward.area_codes)
        for html in content["flyers"].values():
            page = parsed(html, "h1", "title")
            assert set(page.tags) <= FLYER_TAGS
            assert page.texts["h1"] == [notice.title]
            assert page.texts["title"] == [
                bracketed(alert_marks(notice, "ja"), "ja") + notice.title
            ]
    else:
        entry = parsed(content["html"], "h2", "p")
        assert set(entry.tags) <= PRINT_TAGS
        assert entry.texts["h2"] == [notice.title]
        easy = notice.translations.get("easy")
        if easy is not None:
            assert easy.title in entry.texts["p"]


def _rebuilt(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=email.policy.strict).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    assert message.defects == [] and all(not p.defects for p in message.walk())
    return message


@RUNS
@given(data=st.data())
def test_email_reads_back_as_composed(
    runtime: Runtime, mail: EmailChannel, data: st.DataObject
) -> None:
    notice = data.draw(notices(runtime.settings.ward))
    link = f"{runtime.settings.public_url}/unsubscribe/{TOKEN}"
    for lang in languages(notice):
        content = EmailChannel.compose(runtime.templates, notice, lang)
        mail._skeletons.clear()  # each example is notice n1: build it afresh
        batch = Batch("n1", notice.kind, "email", lang, 0, (RECIPIENT,), content)
        raw = mail.message(mail.skeleton(batch), batch, RECIPIENT, TOKEN)
        raw.decode("ascii")  # 7-bit: encoded words and base64
        assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
        message = _rebuilt(raw)
        subject = str(message["Subject"])
        assert subject == content["subject"] and not re.search("[\r\n]", subject)
        assert subject.endswith(notice.title_in(lang))
        assert message["To"] == RECIPIENT.address
        plain, html = message.get_body(("plain",)), message.get_body(("html",))
        assert plain is not None and html is not None
        text = plain.get_content().replace("\r\n", "\n")
        assert notice.body_in(lang) in text and link in text
        markup = html.get_content().replace("\r\n", "\n")
        page = parsed(markup, "h1")
        assert page.texts["h1"] == [notice.title_in(lang)]
        assert "script" not in page.tags and "img" not in page.tags
        assert f'href="{link}"' in markup


def test_a_flyer_with_markup_in_its_title_lays_out(runtime: Runtime, tmp_path: Path) -> None:
    """One flyer through WeasyPrint: what the property test checks as HTML prints."""
    from weasyprint import HTML

    notice = Alert.model_validate(
        {
            "title": '<script>"避難指示"</script> & 🌸 𠮷 {{ x }} %%TO%%',
            "body": "落ち着いて\n避難所へ。\n\n<b>太字ではない</b>",
            "severity": "emergency",
            "areas": [],
            "url": "https://www.city.nerima.tokyo.jp/bousai/?a=1&b=2#x",
        },
        context={"ward": runtime.settings.ward},
    )
    notice.id, notice.received_at = "n1", datetime(2026, 11, 26, tzinfo=UTC)
    html = PrintChannel.compose(runtime.templates, notice, "ja")["flyers"]["nerima"]
    pdf = HTML(string=html).write_pdf()
    assert pdf is not None and pdf.startswith(b"%PDF")


def test_the_strategies_reach_what_matters(runtime: Runtime) -> None:
    """The drawn notices are mostly accepted, and include links, alerts and long bodies."""
    seen: dict[str, int] = {"notices": 0, "links": 0, "alerts": 0, "long": 0}
    before = dict(DRAWN)

    @settings(max_examples=100, deadline=None, derandomize=True)
    @given(data=st.data())
    def draw(data: st.DataObject) -> None:
        notice = data.draw(notices(runtime.settings.ward))
        seen["notices"] += 1
        seen["links"] += notice.url is not None
        seen["alerts"] += isinstance(notice, Alert)
        seen["long"] += len(notice.body) > 1000

    draw()
    drawn, refused = (DRAWN[k] - before[k] for k in ("drawn", "refused"))
    assert seen["notices"] == 100 and refused < drawn / 2, (drawn, refused)
    assert min(seen["links"], seen["alerts"], seen["long"]) >= 10, seen


def notice_of(runtime: Runtime, **fields: Any) -> Announcement:
    data = {"title": "お知らせ", "body": "本文", "topics": ["garbage"], "areas": [], **fields}
    made = Announcement.model_validate(data, context={"ward": runtime.settings.ward})
    made.id, made.received_at = "n1", datetime(2026, 11, 26, tzinfo=UTC)
    return made


def mailed(mail: EmailChannel, content: dict[str, Any]) -> EmailMessage:
    mail._skeletons.clear()
    batch = Batch("n1", "announcement", "email", "ja", 0, (RECIPIENT,), content)
    return _rebuilt(mail.message(mail.skeleton(batch), batch, RECIPIENT, TOKEN))


def test_a_line_break_in_a_title_lost_every_email_of_its_notice(
    runtime: Runtime, mail: EmailChannel
) -> None:
    """The email package refuses a Subject with a line break, so a batch with one could
    never be sent. Intake refuses such a title; a batch that still carries one (rendered
    from a notice stored before intake checked titles) goes out all the same, its Subject
    on one line and no header made of it."""
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        EmailMessage()["Subject"] = "避難指示\r\nBcc: x@evil.example"
    content = EmailChannel.compose(runtime.templates, notice_of(runtime), "ja")
    message = mailed(mail, {**content, "subject": "【練馬区】避難指示\r\nBcc: x@evil.example"})
    assert message["Subject"] == "【練馬区】避難指示 Bcc: x@evil.example"
    assert message["Bcc"] is None


@pytest.mark.parametrize(
    "title",
    ["%%TO%% and %%TOKEN%%", "=?utf-8?q?=E5=81=BD?=", "Notice =?iso-8859-1?b?QQ==?= end"],
)
def test_a_subject_that_looks_like_the_mails_own_parts_is_sent_as_written(
    runtime: Runtime, mail: EmailChannel, title: str
) -> None:
    """A title may hold the stand-ins the skeleton is cut at, or encoded-word syntax the
    email package would decode into another subject: neither is taken for what it looks
    like, and the Subject says what the title says."""
    content = EmailChannel.compose(runtime.templates, notice_of(runtime, title=title), "ja")
    message = mailed(mail, content)
    assert message["Subject"] == f"【練馬区】{title}" and message["To"] == RECIPIENT.address


def test_a_body_holding_the_old_unsubscribe_stand_in_keeps_it(
    runtime: Runtime, mail: EmailChannel
) -> None:
    body = "配信の停止は %%UNSUBSCRIBE_URL%% ではありません"
    content = EmailChannel.compose(runtime.templates, notice_of(runtime, body=body), "ja")
    plain = mailed(mail, content).get_body(("plain",))
    assert plain is not None and body in plain.get_content()


def test_a_post_that_is_not_too_long_is_never_numbered() -> None:
    """A text X refuses for a character (U+FEFF), not for its length, stays one post: a
    thread is for a text too long for one, so never "… (1/1)"."""
    from channels.x_text import thread

    posts, _ = thread("【お知らせ】避難所を開設しました\ufeff", 5)
    assert posts == ["【お知らせ】避難所を開設しました\ufeff"]


@pytest.mark.parametrize(
    "url", [None, "https://a.bc/" + "x" * 900, "https://www.city.nerima.tokyo.jp/" + "y" * 900]
)
def test_a_word_or_a_link_longer_than_a_post_is_cut_to_fit(runtime: Runtime, url: str) -> None:
    """A piece longer than a post is cut between its characters, and a link X does not
    count as a link (an unknown domain) is weighed as the text it is: every post, the one
    that ends with the link too, is within X's limit."""
    body = "本文です。" + "z" * 400 + " 以上です。"
    notice = notice_of(runtime, body=body, **({"url": url} if url else {}))
    posts = XChannel.compose(runtime.templates, notice, "ja")["posts"]
    assert posts and all(parse_tweet(p).valid for p in posts)


def test_a_long_notice_is_weighed_a_post_at_a_time(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """twitter-text takes seconds over a long Japanese text with a dot in it, so the
    thread and the cut to fit a link ask it about a post's worth of text at a time, a few
    times a post, and never about the whole body."""
    import channels.x_text

    asked: list[int] = []

    def counted(text: str, *args: Any) -> Any:
        asked.append(len(text))
        return parse_tweet(text, *args)

    monkeypatch.setattr(channels.x_text, "parse_tweet", counted)
    body = ("区内全域に避難指示が出ています。落ち着いて避難してください" * 200)[:4990] + "1.5m"
    for url in (None, "https://www.city.nerima.tokyo.jp/bousai/"):
        asked.clear()
        notice = notice_of(runtime, body=body, **({"url": url} if url else {}))
        posts = XChannel.compose(runtime.templates, notice, "ja")["posts"]
        assert len(posts) == (1 if url else runtime.settings.x_max_posts)
        assert len(asked) < 120 and max(asked) < 1200, (len(asked), max(asked))
