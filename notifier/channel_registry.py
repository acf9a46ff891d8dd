"""The channels the service knows, each declared once.

Every list of channels (the configuration's, the models', the command line's, the
dispatcher's, the console's) is read from ``REGISTRY``. A declaration names the class that
sends, which is imported only when the service builds it (``channels.channel_class``), so
the configuration and the command line read this without loading any SDK.

Adding a channel: write its class (``channels/<name>.py``, a ``BaseChannel`` whose ``spec``
is its entry here), its templates (``templates/<name>/``), and one ``ChannelSpec`` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Audience = Literal["subscribers", "public", "areas"]
Address = Literal["line_user_id", "email", "postal", "phone"]


@dataclass(frozen=True)
class ChannelSpec:
    """What the rest of the service knows of a channel.

    ``audience`` says who a notice reaches on it:
    - ``subscribers``: the residents who chose it, by area, topic and language, cut into
      batches of ``batch_size`` (a number, or the settings field that holds it);
    - ``public``: one post everyone can read; a drill is never posted;
    - ``areas``: one batch naming the notice's areas (printed for the offline).
    ``address`` is what a resident registers on it, if residents register one by one.
    """

    name: str
    implementation: str  # "module:Class", imported when the service sends
    label: str  # what staff read in the console
    audience: Audience
    credentials: tuple[str, ...] = ()  # the settings it needs to send for real
    batch_size: int | str = 1
    address: Address | None = None
    quiet: bool = False  # its routine notices wait out the quiet hours unless configured
    live: bool = True  # False: it only ever writes files (nothing to send to)
    writes: str = ""  # what `notifier check` says it does when it is not live

    @property
    def cut(self) -> bool:
        """Whether its audience is cut from the subscriber index."""
        return self.audience == "subscribers"

    def reaches(self, drill: bool) -> bool:
        """Whether a notice goes out on it at all (a drill is never posted publicly)."""
        return not (drill and self.audience == "public")

    def batch(self, settings: object) -> int:
        """Its batch size under ``settings`` (notifier.config.Settings, which reads this)."""
        size = self.batch_size
        return int(getattr(settings, size)) if isinstance(size, str) else size

    def missing(self, settings: object) -> list[str]:
        """The NOTIFIER_* variables it still needs to send for real."""
        return [f"NOTIFIER_{f.upper()}" for f in self.credentials if getattr(settings, f) is None]


REGISTRY: dict[str, ChannelSpec] = {
    spec.name: spec
    for spec in (
        ChannelSpec(
            "line",
            "channels.line:LineChannel",
            "LINE",
            "subscribers",
            credentials=("line_channel_access_token", "line_channel_secret"),
            batch_size="line_batch_size",
            address="line_user_id",
            quiet=True,  # a LINE message rings the phone
        ),
        ChannelSpec(
            "x",
            "channels.x:XChannel",
            "X",
            "public",
            credentials=(
                "x_consumer_key",
                "x_consumer_secret",
                "x_access_token",
                "x_access_token_secret",
            ),
        ),
        ChannelSpec(
            "email",
            "channels.email:EmailChannel",
            "メール",
            "subscribers",
            credentials=("smtp_host", "mail_from"),
            batch_size="email_batch_size",
            address="email",
        ),
        ChannelSpec(
            "print",
            "channels.print:PrintChannel",
            "印刷",
            "areas",
            address="postal",
            live=False,
            writes="PDFs to {settings.print_dir}; digest entries to {settings.outbox_dir}/print",
        ),
    )
}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def subscribed() -> tuple[str, ...]:
    """The channels residents register on one by one."""
    return tuple(name for name, spec in REGISTRY.items() if spec.address)


def quiet() -> list[str]:
    """The channels the quiet hours hold by default."""
    return [name for name, spec in REGISTRY.items() if spec.quiet]


def spec(name: str) -> ChannelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"no channel named {name!r}; known: {', '.join(REGISTRY)}") from None


def check(value: str) -> str:
    """A channel's name as the models and settings take it: one the registry knows (the
    message does not repeat what was given)."""
    if value not in REGISTRY:
        raise ValueError(f"must be one of {', '.join(REGISTRY)}")
    return value
