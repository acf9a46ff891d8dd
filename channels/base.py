"""The one small interface every channel implements, and the thin base around it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

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

Audience = Literal["subscribers", "public", "areas"]


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
    content: dict[str, Any]
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


class Channel(Protocol):
    name: ClassVar[str]
    audience: ClassVar[Audience]
    batch_size: ClassVar[int]
    live: bool

    @classmethod
    def languages(cls, notice: AnyNotice, wanted: set[str]) -> set[str]: ...

    @staticmethod
    def compose(templates: Templates, notice: AnyNotice, lang: str) -> dict[str, Any]: ...

    async def send(self, batch: Batch) -> Outcome: ...

    async def warm(self) -> None: ...

    async def close(self) -> None: ...


class BaseChannel:
    """Timing, metrics and logging around a channel's own ``_send``."""

    name: ClassVar[str]
    audience: ClassVar[Audience] = "subscribers"
    batch_size: ClassVar[int] = 100
    live: bool = False

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
    def compose(templates: Templates, notice: AnyNotice, lang: str) -> dict[str, Any]:
        """The rendered content of one language's batches; each channel overrides it."""
        raise NotImplementedError

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
