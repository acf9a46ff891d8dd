"""The one rule for a notice's text, whichever way it comes in (the HTTP API, CAP, the
console, the intake stream): only what every channel can carry. Pure.

- A title is one line: no line break of any kind, no tab, no other control character.
- A body keeps its line breaks, as ``\\n``: CRLF, a bare CR and U+2028 become ``\\n``,
  U+2029 a blank line, a tab a space; every other control character is refused.
- Neither may hold direction controls (they reorder what a reader sees), U+FEFF or
  noncharacters (X refuses a post with them), or lone surrogates (not encodable in UTF-8).
- A link is an absolute ``https://`` URI as RFC 3986 writes it, with a host name and no
  user name, without quotes, and at most 1,000 characters (LINE's limit for a button).

Messages name what is wrong, never the value: it may be personal data.
"""

from __future__ import annotations

import re
from typing import Any

LINK_LIMIT = 1000  # LINE's limit for a URI action's uri

# every C0 control (tab, line breaks, NUL, ESC …), DEL and every C1 control (NEL …)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")  # str.splitlines()'s
BODY_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # all but \n, once normalised
DIRECTION = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
NOT_TEXT = re.compile(
    "[\ud800-\udfff\ufdd0-\ufdef\ufeff"
    + "".join(chr(plane + 0xFFFE) + chr(plane + 0xFFFF) for plane in range(0, 0x110000, 0x10000))
    + "]"
)
_BODY_LINE_ENDS = re.compile("\r\n?|\u2028|\u2029|\t")
_AS_LF = {"\r\n": "\n", "\r": "\n", "\u2028": "\n", "\u2029": "\n\n", "\t": " "}

# RFC 3986's URI, narrowed: the https scheme, a host name (dot-separated labels, the last
# one not all digits), an optional port, and pchars without the apostrophe (sub-delims)
_PCHAR = "(?:[A-Za-z0-9._~!$&()*+,;=:@-]|%[0-9A-Fa-f]{2})"
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOP = "[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
LINK = re.compile(
    f"https://(?P<host>(?:{_LABEL}\\.)+{_TOP})(?::(?P<port>[1-9][0-9]{{0,4}}))?"
    f"(?:/{_PCHAR}*)*(?:\\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
)

SURROGATES = "must be valid Unicode text (a lone surrogate is not)"


def unicode_text(value: Any) -> Any:
    """Lone surrogates refused before pydantic's own check, which would say less."""
    if isinstance(value, str) and re.search("[\ud800-\udfff]", value):
        raise ValueError(SURROGATES)
    return value


def body_line_ends(value: Any) -> Any:
    """A body's line breaks as ``\\n`` and its tabs as spaces (before trimming and
    counting, so that a browser's CRLF does not count twice)."""
    value = unicode_text(value)
    if isinstance(value, str):
        return _BODY_LINE_ENDS.sub(lambda found: _AS_LF[found.group()], value)
    return value


def _printable(value: str) -> None:
    if DIRECTION.search(value):
        raise ValueError(
            "must not contain direction controls (U+202A–U+202E, U+2066–U+2069, "
            "U+200E, U+200F, U+061C)"
        )
    if NOT_TEXT.search(value):
        raise ValueError("must not contain U+FEFF or noncharacters (U+FFFE, U+FFFF …)")


def title(value: str) -> str:
    if LINE_BREAK.search(value):
        raise ValueError("must be one line (no line breaks)")
    if CONTROL.search(value):
        raise ValueError("must not contain control characters (tabs, NUL, escape …)")
    _printable(value)
    return value


def body(value: str) -> str:
    if BODY_CONTROL.search(value):
        raise ValueError("must not contain control characters other than line breaks")
    _printable(value)
    return value


def is_link(value: str) -> bool:
    found = LINK.fullmatch(value)
    return (
        found is not None
        and len(value) <= LINK_LIMIT
        and len(found["host"]) <= 253
        and (found["port"] is None or int(found["port"]) <= 65535)
    )


def link(value: str) -> str:
    if len(value) > LINK_LIMIT:
        raise ValueError(f"must be at most {LINK_LIMIT:,} characters (LINE's limit for a link)")
    if not is_link(value):
        raise ValueError(
            "must be an https:// link with a host name, as RFC 3986 writes it: no spaces, "
            "quotes, < > or \\, other characters %-encoded "
            "(such as https://www.city.nerima.tokyo.jp/)"
        )
    return value
