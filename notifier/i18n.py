"""What the service says to a resident, in the resident's language.

The messages are written in Japanese in the code (``_("設定を保存しました。")``); each other
language the ward offers has a gettext catalogue, ``templates/i18n/<code>.po`` (read
with Babel, once per process). A message a catalogue lacks is said in Japanese, and a
test holds every catalogue to every message the code says.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable
from functools import cache
from pathlib import Path

from notifier.config import PROJECT_ROOT

CATALOGUES = PROJECT_ROOT / "templates" / "i18n"
SOURCE = "ja"  # the language the messages are written in: no catalogue of its own
KEYWORDS = {"_": None, "say": None, "N_": None}  # the calls that say a message, for Babel
# the files that say them (from the project's root), and how Babel reads each
SAID_IN = {
    "notifier/render.py": "python",
    "notifier/levels.py": "python",
    "notifier/line_chat.py": "python",
    "channels/line.py": "python",
    "templates/line/announcement.json": "jinja2.ext:babel_extract",
    "templates/line/announcement.txt": "jinja2.ext:babel_extract",
    "templates/email/announcement.html": "jinja2.ext:babel_extract",
    "templates/email/announcement.txt": "jinja2.ext:babel_extract",
    "templates/email/announcement.subject.txt": "jinja2.ext:babel_extract",
    "templates/print/flyer.html": "jinja2.ext:babel_extract",
    "templates/email/confirm.txt": "jinja2.ext:babel_extract",
    "notifier/web/subscribe.py": "python",
    "notifier/web/resident.py": "python",
    "templates/web/base.html": "jinja2.ext:babel_extract",
    "templates/web/subscribe.html": "jinja2.ext:babel_extract",
    "templates/web/settings.html": "jinja2.ext:babel_extract",
    "templates/web/sent.html": "jinja2.ext:babel_extract",
    "templates/web/_choices.html": "jinja2.ext:babel_extract",
    "notifier/web/shelters.py": "python",
    "templates/web/shelters.html": "jinja2.ext:babel_extract",
}
HTML_LANG = {"easy": "ja", "zh": "zh-Hans"}  # a language's tag in HTML's lang, where not its code

Say = Callable[[str], str]
SEPARATORS = {"en": ", ", "ko": ", ", "zh": "、"}  # between names in a list; else ・


def catalogue_path(lang: str) -> Path:
    return CATALOGUES / f"{lang}.po"


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The language's messages; Japanese (the messages as written) where there is no
    catalogue, or the catalogue has no translation of a message."""
    from babel.messages.mofile import write_mo  # only to say something: not at import
    from babel.messages.pofile import read_po

    path = catalogue_path(lang)
    if lang == SOURCE or not path.is_file():
        return gettext.NullTranslations()
    with path.open("rb") as f:
        catalog = read_po(f, locale=None)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def joined(names: list[str], lang: str) -> str:
    """Names one after another, as ``lang`` lists them: 練馬・大泉, Nerima, Oizumi."""
    return SEPARATORS.get(lang, "・").join(names)


def N_(message: str) -> str:  # gettext's name for it
    """Marks a message said later, in more than one language (``speaker(code)(message)``)."""
    return message


def speaker(lang: str) -> Say:
    """``_`` for one resident: ``_("完了")`` is 完了, Done, 完成, 완료 … by ``lang``."""
    return translations(lang).gettext
