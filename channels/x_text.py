"""Posts for X, measured by X's own rules (twitter-text: CJK counts 2, a link 23, 280 in all).

Pure functions: a text that fits is one post; one that does not becomes a numbered thread
cut only between words (never inside a word or a link), or, when the notice has a link,
one post that ends with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from twitter_text import extract_urls_with_indices, parse_tweet

LIMIT = 280
ELLIPSIS = "…"
_WORD = re.compile(r"[A-Za-z0-9À-ɏ_'’\-.,:;!?%&@#/+=*()\[\]\"]+|\s+|.", re.DOTALL)


def weight(text: str) -> int:
    return int(parse_tweet(text).weightedLength)


def fits(text: str) -> bool:
    return bool(parse_tweet(text).valid)


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


def _pack(parts: list[str], room: int) -> list[str]:
    """Greedy: as many pieces as fit in ``room`` per chunk; a piece too big alone is cut."""
    chunks: list[str] = []
    current = ""
    for part in parts:
        if weight(current + part) <= room or not current.strip():
            if weight(part) > room:  # a single piece longer than a post: cut it hard
                for ch in part:
                    if weight(current + ch) > room:
                        chunks.append(current)
                        current = ""
                    current += ch
                continue
            current += part
        else:
            chunks.append(current)
            current = part
    if current:
        chunks.append(current)
    return chunks


def numbered(chunk: str, index: int, total: int) -> str:
    return f"{chunk.strip()} ({index}/{total})"


def thread(text: str, max_posts: int) -> tuple[list[str], list[str]]:
    """(posts, slices): the posts to send and the slice of ``text`` each carries.

    ``"".join(slices) == text`` unless the thread had to stop at ``max_posts``, when the
    last post ends with an ellipsis.
    """
    if fits(text):
        return [text], [text]
    parts = pieces(text)
    total = 2
    while True:  # the numbering's width depends on the count, so settle it
        room = LIMIT - weight(f" ({total}/{total})")
        chunks = [c for c in _pack(parts, room) if c.strip()] or [text]
        if len(chunks) <= total or len(chunks) > 999:
            break
        total = len(chunks)
    total = len(chunks)
    if total > max_posts:
        kept = chunks[:max_posts]
        room = LIMIT - weight(f" ({max_posts}/{max_posts})") - weight(ELLIPSIS)
        last = _pack(pieces(kept[-1]), room)[0]
        kept[-1] = last.rstrip() + ELLIPSIS
        chunks, total = kept, max_posts
        return [numbered(c, i + 1, total) for i, c in enumerate(chunks)], chunks
    return [numbered(c, i + 1, total) for i, c in enumerate(chunks)], chunks


def with_link(render: Callable[[str], str], body: str) -> str:
    """One post whose body is cut (with an ellipsis) so that the whole, link included, fits."""
    text = render(body)
    if fits(text):
        return text
    low, high = 0, len(body)
    while low < high:  # the longest cut that fits
        middle = (low + high + 1) // 2
        if fits(render(body[:middle].rstrip() + ELLIPSIS)):
            low = middle
        else:
            high = middle - 1
    return render(body[:low].rstrip() + ELLIPSIS)


def same_post(a: str, b: str) -> bool:
    """Whether two texts are the same post, X having replaced the links with t.co ones."""

    def strip(text: str) -> str:
        for found in reversed(extract_urls_with_indices(text)):
            start, end = found["indices"]
            text = text[:start] + "<link>" + text[end:]
        return " ".join(text.split())

    return strip(a) == strip(b)
