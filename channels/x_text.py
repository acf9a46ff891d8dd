"""Posts for X, measured by X's own rules (twitter-text: CJK counts 2, a link 23, 280 in all).

Pure functions: a text that fits is one post; one that does not becomes a numbered thread
cut only between words (never inside a word or a link), or, when the notice has a link,
one post that ends with it. A thread cut short may keep its end (the link) in its last post.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from twitter_text import extract_urls_with_indices, parse_tweet

LIMIT = 280
ELLIPSIS = "…"
_WORD = re.compile(r"[A-Za-z0-9À-ɏ_'’\-.,:;!?%&@#/+=*()\[\]\"]+|\s+|.", re.DOTALL)
# what twitter-text weighs at 1 or more wherever it stands: spaces, line feeds, kana and
# kanji (no emoji holds them, and a link only after its "://")
_KANA_KANJI = "\u3041-\u3096\u309d-\u30ff\u4e00-\u9fff"
_WEIGHTY = re.compile(f"[ \n{_KANA_KANJI}]")
_SCHEMED = re.compile(r"://\S*")
_LINK_OR_KANA_KANJI = re.compile(f"://\\S*|(?P<heavy>[{_KANA_KANJI}])")
# a character RFC 3986 allows in a link: a link followed by one goes on
_LINK_GOES_ON = r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]"


def weight(text: str) -> int:
    return int(parse_tweet(text).weightedLength)


def fits(text: str) -> bool:
    return not _surely_over(text) and bool(parse_tweet(text).valid)


def _surely_over(text: str) -> bool:
    """Over the limit by a count of what surely weighs, without asking twitter-text: its
    search for links takes seconds over a long Japanese text with a dot in it."""
    return len(text) > LIMIT and len(_WEIGHTY.findall(_SCHEMED.sub("", text))) > LIMIT


def _enough(text: str, max_posts: int) -> str:
    """The start of ``text`` that holds the posts of the longest thread and two more, by
    a count of the kana and kanji outside links (each weighs at least 1 in any post): the
    rest is never posted, and twitter-text's search for links takes seconds over a long
    text."""
    need, counted = (max_posts + 2) * LIMIT, 0
    for found in _LINK_OR_KANA_KANJI.finditer(text):
        counted += found["heavy"] is not None
        if counted > need:
            return text[: found.end()]
    return text


def pieces(text: str) -> list[str]:
    """The text as indivisible pieces: links, Latin words, runs of space, single other
    characters (a Japanese sentence may be cut between any two characters)."""
    out: list[str] = []
    at = 0
    for found in extract_urls_with_indices(text):
        start, end = found["indices"]
        out += _WORD.findall(text[at:start])
        out.append(text[start:end])
        at = end
    out += _WORD.findall(text[at:])
    return out


def _posted(chunk: str) -> int:
    """A chunk's weight as it is posted: without the white space at its ends."""
    return weight(chunk.strip())


def _pack(parts: list[str], room: int, limit: int) -> list[str]:
    """Greedy: as many pieces as fit in ``room`` per chunk, up to ``limit`` chunks (what
    comes after is not posted). A run of pieces is tried at once, twice as many after
    each that fits, half as many after one that does not, and as many as the chunk
    before took to start a chunk: a few weighings a post, not one a character. A piece
    too big alone is cut between its characters; every chunk has more than white space."""
    chunks: list[str] = []
    todo = list(parts)
    current, at, step, start = "", 0, 1, 0
    while at < len(todo) and len(chunks) < limit:
        run = "".join(todo[at : at + step])
        if _posted(current + run) <= room:
            current, at, step = current + run, at + step, step * 2
        elif step > 1:
            step //= 2
        elif current.strip():  # the chunk is full
            chunks.append(current)
            current, step, start = "", max(1, at - start), at
        else:  # one piece longer than a post (a long word, a link X does not see)
            todo[at : at + 1] = list(todo[at])
    if current.strip() and len(chunks) < limit:
        chunks.append(current)
    return chunks


def numbered(chunk: str, index: int, total: int) -> str:
    return f"{chunk.strip()} ({index}/{total})"


def thread(text: str, max_posts: int, tail: str = "") -> tuple[list[str], list[str]]:
    """(posts, slices): the posts to send and the slice of ``text`` each carries.

    ``"".join(slices) == text`` unless the thread had to stop at ``max_posts``, when the
    last post ends with an ellipsis, then ``tail`` (the end of ``text``: its link and
    hashtags, kept when the rest is cut) if a post can hold it.
    """
    if fits(text):
        return [text], [text]
    parts = pieces(_enough(text, max_posts))
    total, room, chunks = 2, 0, [text]
    while True:  # the numbering's width depends on the count, so settle it
        width = LIMIT - weight(f" ({total}/{total})")
        if width != room:  # cut again only for a new width: the same one cuts the same
            room, chunks = width, _pack(parts, width, max_posts + 1) or [text]
        if len(chunks) <= total:
            break
        total = len(chunks)
    total = len(chunks)
    if total == 1:  # never "(1/1)": one post after all (the text was over only for its
        return [chunks[0].strip()], chunks  # white space, or holds a character X refuses)
    if total > max_posts:
        kept = chunks[:max_posts]
        kept[-1] = _last(kept, text, tail, max_posts)
        return [numbered(c, i + 1, max_posts) for i, c in enumerate(kept)], kept
    return [numbered(c, i + 1, total) for i, c in enumerate(chunks)], chunks


def _last(kept: list[str], text: str, tail: str, total: int) -> str:
    """The last post of a thread cut at ``total`` posts: its start, an ellipsis, and
    ``tail`` when that is the end of ``text`` and a post holds it."""
    numbering = weight(f" ({total}/{total})")
    if tail and text.endswith(tail):
        before = len(text) - len(tail) - len("".join(kept[:-1]))  # the last's share
        room = LIMIT - numbering - weight(ELLIPSIS + tail)
        if room > 0:
            packed = _pack(pieces(kept[-1][: max(0, before)]), room, 1)
            last = (packed[0].rstrip() if packed else "") + ELLIPSIS + tail
            if fits(numbered(last, total, total)):
                return last
    room = LIMIT - numbering - weight(ELLIPSIS)
    return _pack(pieces(kept[-1]), room, 1)[0].rstrip() + ELLIPSIS


def mentions(text: str, url: str) -> bool:
    """Whether ``text`` holds the link ``url`` itself, not a longer one that starts so."""
    return re.search(re.escape(url) + f"(?!{_LINK_GOES_ON})", text) is not None


def with_link(render: Callable[[str], str], body: str) -> str:
    """One post whose body is cut (with an ellipsis) so that the whole, link included, fits:
    the longest cut found by doubling a cut that fits, then halving the difference (a post
    holds a few hundred characters: twitter-text is never asked about the whole body)."""
    text = render(body)
    if fits(text):
        return text

    def cut(length: int) -> str:
        return render(body[:length].rstrip() + ELLIPSIS)

    low, high = 0, 1  # a cut that fits (or none), one that does not
    while high < len(body) and fits(cut(high)):
        low, high = high, high * 2
    high = min(high, len(body))
    while high - low > 1:
        middle = (low + high) // 2
        if fits(cut(middle)):
            low = middle
        else:
            high = middle
    return cut(low)


def same_post(a: str, b: str) -> bool:
    """Whether two texts are the same post, X having replaced the links with t.co ones."""

    def strip(text: str) -> str:
        for found in reversed(extract_urls_with_indices(text)):
            start, end = found["indices"]
            text = text[:start] + "<link>" + text[end:]
        return " ".join(text.split())

    return strip(a) == strip(b)
