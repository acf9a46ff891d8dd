"""What a notice will look like on each channel, from the channels' own ``compose``.

The console shows these beside the compose form: the same rendering the workers send,
so what staff see is what residents get.
"""

from __future__ import annotations

from typing import Any

from channels import REGISTRY
from channels.email import UNSUBSCRIBE
from channels.x_text import LIMIT, weight
from notifier.models import AnyNotice
from notifier.render import Templates

PREVIEW_UNSUBSCRIBE = "#unsubscribe"  # the per-recipient link, shown as a stand-in


def previews(templates: Templates, notice: AnyNotice, lang: str = "ja") -> dict[str, Any]:
    """Each of the notice's channels: what it will send, in the form the page shows."""
    shown: dict[str, Any] = {}
    for channel in notice.channels:
        content = REGISTRY[channel].compose(templates, notice, lang)
        if channel == "line":
            message = content["messages"][0]
            shown["line"] = {"alt_text": message["altText"], "bubble": message["contents"]}
        elif channel == "x":
            shown["x"] = [
                {"text": post, "weight": weight(post), "limit": LIMIT} for post in content["posts"]
            ]
        elif channel == "email":
            html = content["html"].replace(UNSUBSCRIBE, PREVIEW_UNSUBSCRIBE)
            shown["email"] = {"subject": content["subject"], "html": html}
        elif channel == "print":
            shown["print"] = {"html": content.get("html", "")}
    return shown
