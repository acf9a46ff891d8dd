"""Posts for X by X's own rules: what fits, where a thread is cut, how it is numbered."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twitter_text import extract_urls_with_indices, parse_tweet

from channels.x_text import LIMIT, mentions, pieces, same_post, thread, weight, with_link

JAPANESE = st.sampled_from(
    list("練馬区のお知らせ粗大ごみ収集日が変わります。、光が丘石神井大泉防災訓練")
)
WORDS = st.sampled_from(["Nerima", "collection", "days", "change", "2026", "emergency", "A4"])
URLS = st.sampled_from(
    ["https://www.city.nerima.tokyo.jp/", "https://www.city.nerima.tokyo.jp/kurashi/gomi/a.html"]
)
PIECE = st.one_of(
    JAPANESE, JAPANESE, JAPANESE, WORDS.map(lambda w: f" {w} "), URLS.map(lambda u: f" {u} ")
)


def numbering(post: str) -> tuple[str, int, int]:
    match = re.fullmatch(r"(?s)(.*) \((\d+)/(\d+)\)", post)
    assert match, post
    return match[1], int(match[2]), int(match[3])


@settings(max_examples=60, deadline=None)
@given(st.lists(PIECE, min_size=1, max_size=700), st.integers(min_value=1, max_value=40))
def test_every_post_fits_and_the_thread_reassembles(parts: list[str], max_posts: int) -> None:
    text = "".join(parts).strip() or "練馬"
    posts, slices = thread(text, max_posts)
    assert all(parse_tweet(p).valid and weight(p) <= LIMIT for p in posts)
    if len(posts) == 1 and posts[0] == text:
        return
    assert len(posts) <= max_posts
    bodies = [numbering(p) for p in posts]
    assert [(i, n) for _, i, n in bodies] == [(i + 1, len(posts)) for i in range(len(posts))]
    if "".join(slices) == text:  # the whole text went out, each post a slice of it
        for (body, _, _), piece in zip(bodies, slices, strict=True):
            assert body == piece.strip()
        for found in extract_urls_with_indices(text):  # every link whole, in one post
            assert any(found["url"] in piece for piece in slices)
        for word in re.findall(r"[A-Za-z0-9]+", text):  # and every word
            assert any(word in piece for piece in slices)
    else:  # cut at max_posts: what went out is the start of the text, then an ellipsis
        assert len(posts) == max_posts and bodies[-1][0].endswith("…")
        assert text.startswith("".join(slices[:-1]))


def test_a_long_japanese_notice_is_a_thread_of_full_posts() -> None:
    text = "区内全域に避難指示が出ています。落ち着いて最寄りの避難所へ向かってください。" * 12
    posts, slices = thread(text, 10)
    assert "".join(slices) == text
    assert [numbering(p)[1:] for p in posts] == [(i + 1, len(posts)) for i in range(len(posts))]
    assert len(posts) == 4 and all(weight(p) <= 280 for p in posts)
    assert weight(posts[0]) >= 270  # posts are filled, not cut early


def test_words_and_links_are_never_split() -> None:
    text = ("練馬" * 60 + " https://www.city.nerima.tokyo.jp/kurashi/gomi/index.html ") * 3
    _, slices = thread(text, 10)
    for piece in slices:
        assert piece.count("https://") == piece.count("index.html")
    assert pieces("see https://a.jp/x, now") == ["see", " ", "https://a.jp/x", ",", " ", "now"]


def test_a_notice_with_a_link_becomes_one_post_ending_with_it() -> None:
    def render(body: str) -> str:
        return f"【お知らせ】粗大ごみ\n{body}\nhttps://www.city.nerima.tokyo.jp/\n#練馬区"

    post = with_link(render, "説明" * 400)
    assert parse_tweet(post).valid and weight(post) > 260
    assert post.endswith("…\nhttps://www.city.nerima.tokyo.jp/\n#練馬区")


def test_the_same_post_is_recognised_after_x_shortens_its_links() -> None:
    sent = "お知らせ https://www.city.nerima.tokyo.jp/a #練馬区"
    assert same_post(sent, "お知らせ https://t.co/AbCdEf123 #練馬区")
    assert not same_post(sent, "別のお知らせ https://t.co/AbCdEf123 #練馬区")


def test_a_thread_cut_short_keeps_its_link_in_the_last_post() -> None:
    url = "https://www.city.nerima.tokyo.jp/bousai/"
    tail = f"\n{url}\n#練馬区"
    text = "【お知らせ】避難所の開設\n" + "避難所を開設しました。" * 60 + tail
    cut, _ = thread(text, 2)
    assert not any(url in p for p in cut)  # without its tail the link went with the rest
    posts, slices = thread(text, 2, tail)
    assert [numbering(p)[1:] for p in posts] == [(1, 2), (2, 2)]
    assert all(parse_tweet(p).valid for p in posts)
    assert posts[-1].endswith(f"…{tail} (2/2)")
    assert [url in p for p in posts] == [False, True]
    assert posts[0] == cut[0] and text.startswith("".join(slices[:-1]))
    assert thread(text, 2, "\n#not-the-end") == (cut, thread(text, 2)[1])


def test_a_link_is_mentioned_only_where_it_ends() -> None:
    url = "https://www.city.nerima.tokyo.jp/bousai/"
    assert mentions(f"詳しくは {url} をご覧ください", url)
    assert mentions(f"詳しくは{url}。", url)
    assert mentions(url, url)
    assert not mentions(f"{url}kyuujo.html", url) and not mentions("防災のページ", url)
