"""The base every channel builds on: what a batch and its outcome are, and the timing,
metrics and logging around a channel's own ``_send``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from notifier.channel_registry import Audience, ChannelSpec
from notifier.logs import event
from notifier.recipients import Recipient as Recipient  # where the channels take it from
from notifier.recipients import Recipients

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from notifier.config import Settings
    from notifier.keys import Keys
    from notifier.metrics import Metrics
    from notifier.models import AnyNotice
    from notifier.render import Templates

log = logging.getLogger("notifier.channels")


class DeliveryError(Exception):
    """A batch could not be delivered."""

    def __init__(self, message: str, meta: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.meta = meta or {}  # what the channel said (request ids), for the batch log

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class PermanentError(DeliveryError):
    """Never retry: the channel refused the request (400, 401, 403, 409 …)."""


class RetryableError(DeliveryError):
    """Try again later; ``defer`` is the wait the channel asked for, if it said."""

    def __init__(
        self,
        message: str,
        defer: float | None = None,
        meta: dict[str, Any] | None = None,
        spend: bool = True,
    ) -> None:
        super().__init__(message, meta)
        self.defer = defer
        self.spend = spend  # False: waiting for a quota, not failing: no attempt is used

    def __repr__(self) -> str:
        return f"RetryableError({self.message!r}, defer={self.defer!r})"


class Paused(RetryableError):
    """The channel can't send for ``defer`` seconds (a quota is spent): hold every batch,
    spend no attempt, and say so in readiness and progress."""

    def __init__(self, message: str, defer: float) -> None:
        super().__init__(message, defer, spend=False)
        self.defer: float = defer


@dataclass(frozen=True)
class Batch:
    notice_id: str
    kind: str
    channel: str
    lang: str
    number: int
    recipients: Recipients
    content: dict[str, Any]  # what the channel composed, as JSON carries it (``content_of``)
    areas: tuple[str, ...] = ()
    attempt: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.recipients, Recipients):  # a tuple of Recipient
            object.__setattr__(self, "recipients", Recipients.of(self.recipients))


@dataclass
class Outcome:
    sent: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # recipient id → reason
    meta: dict[str, Any] = field(default_factory=dict)  # what the channel said (request ids)


@dataclass(frozen=True)
class Context:
    """What a channel may use: settings, Redis (for shared state), metrics."""

    settings: Settings
    redis: Redis
    keys: Keys
    metrics: Metrics

    def outbox(self, channel: str) -> Path:
        path = self.settings.outbox_dir / channel
        path.mkdir(parents=True, exist_ok=True)
        return path


Content = TypeVar("Content")  # a channel's own TypedDict of what it composes


class BaseChannel(Generic[Content]):
    """A channel: ``spec`` is its entry in notifier/channel_registry.py; it composes a
    notice into its ``Content`` once per language, and sends batches of it.

    Subclasses write ``compose`` and ``_send`` (and ``warm``/``close`` if they hold a
    process or a connection); ``send`` wraps ``_send`` in timing, metrics and a log line.
    """

    spec: ClassVar[ChannelSpec]
    name: ClassVar[str]  # spec.name, set for each subclass
    audience: ClassVar[Audience]  # spec.audience
    live: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "spec" in cls.__dict__:
            cls.name = cls.spec.name
            cls.audience = cls.spec.audience

    def __init__(self, context: Context) -> None:
        self.context = context

    translated: ClassVar[bool] = True  # False: the channel speaks Japanese to everyone

    @classmethod
    def languages(cls, notice: AnyNotice, wanted: set[str]) -> set[str]:
        """The languages to render for recipients who want ``wanted``; Japanese stands in."""
        if not cls.translated:
            return {"ja"}
        return {lang if lang in notice.translations else "ja" for lang in wanted}

    @staticmethod
    def compose(templates: Templates, notice: AnyNotice, lang: str) -> Content:
        """The rendered content of one language's batches; each channel overrides it."""
        raise NotImplementedError

    @staticmethod
    def content_of(batch: Batch) -> Content:
        """The batch's content as this channel composed it (it went through JSON)."""
        return cast("Content", batch.content)

    async def send(self, batch: Batch) -> Outcome:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await self._send(batch)
            outcome = "ok"
            return result
        except RetryableError:
            outcome = "retry"
            raise
        except PermanentError:
            outcome = "refused"
            raise
        finally:
            elapsed = time.perf_counter() - started
            self.context.metrics.send_seconds.labels(self.name).observe(elapsed)
            event(
                log,
                "batch.send",
                channel=self.name,
                notice=batch.notice_id,
                batch=batch.number,
                recipients=len(batch.recipients),
                attempt=batch.attempt,
                outcome=outcome,
                ms=round(elapsed * 1000, 1),
            )

    async def _send(self, batch: Batch) -> Outcome:
        raise NotImplementedError

    async def warm(self) -> None:
        """Get ready before the first batch (start a process, open a connection)."""
        return None

    async def close(self) -> None:
        return None
