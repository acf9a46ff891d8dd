"""What a notice and a subscriber are, and how input is checked (pure: no I/O)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from notifier import channel_registry, text
from notifier.config import Ward, check_readings
from notifier.hazards import Hazard
from notifier.levels import severity_of

Channel = Annotated[str, AfterValidator(channel_registry.check)]  # a name REGISTRY knows
NOTICE_ID = r"^[A-Za-z0-9_-]{1,64}$"
LINE_USER_ID = re.compile(r"^U[0-9a-f]{32}$")
PHONE = re.compile(r"^\+[1-9][0-9]{7,14}$")  # E.164: +81312345678
MAX_SCHEDULE_AHEAD = timedelta(days=366)


def _rfc3339_text(value: Any) -> Any:
    """publish_at must be an RFC 3339 string, not a number or a bare date."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or "T" not in value.upper():
        raise ValueError("must be an RFC 3339 date-time such as 2026-12-01T09:00:00+09:00")
    return value


PublishAt = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]

# the text rule (notifier/text.py): pydantic trims and counts between the two steps
Title = Annotated[
    str,
    Field(min_length=1, max_length=100),
    BeforeValidator(text.unicode_text),
    AfterValidator(text.title),
]
Body = Annotated[
    str,
    Field(min_length=1, max_length=5000),
    BeforeValidator(text.body_line_ends),
    AfterValidator(text.body),
]
Link = Annotated[str, BeforeValidator(text.unicode_text), AfterValidator(text.link)]


def _ward(info: ValidationInfo) -> Ward:
    context = info.context or {}
    ward = context.get("ward")
    if not isinstance(ward, Ward):
        raise RuntimeError("validation needs the ward in its context")
    return ward


def _check_codes(values: list[str], known: list[str], what: str) -> list[str]:
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(
            f"unknown {what} {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    return list(dict.fromkeys(values))  # keep order, drop repeats


def _all_channels() -> list[str]:
    return list(channel_registry.names())


def _subscribed(value: str) -> str:
    if value not in channel_registry.subscribed():
        raise ValueError(f"must be one of {', '.join(channel_registry.subscribed())}")
    return value


def _areas(value: list[str], info: ValidationInfo) -> list[str]:
    return _check_codes(value, _ward(info).area_codes, "area")


def _topics(value: list[str], info: ValidationInfo) -> list[str]:
    return _check_codes(value, _ward(info).topic_codes, "topic")


AreaCodes = Annotated[list[str], AfterValidator(_areas)]
TopicCodes = Annotated[list[str], AfterValidator(_topics)]


class Translation(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: Title
    body: Body


class Notice(BaseModel):
    """What announcements and alerts share. Validation needs the context
    ``{"ward": Ward, "now": datetime | None}``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: str
    id: str | None = Field(default=None, pattern=NOTICE_ID)
    title: Title
    body: Body
    areas: AreaCodes = Field(default_factory=list)  # none, or left out: the whole ward
    channels: list[Channel] = Field(default_factory=_all_channels, min_length=1)
    url: Link | None = None
    translations: dict[str, Translation] = Field(default_factory=dict)
    readings: dict[str, str] = Field(default_factory=dict)  # furigana on paper: 石神井 → しゃくじい
    received_at: AwareDatetime | None = None

    @field_validator("readings")
    @classmethod
    def _readings(cls, value: dict[str, str]) -> dict[str, str]:
        return check_readings(value)

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[Channel]) -> list[Channel]:
        return list(dict.fromkeys(value))

    @field_validator("translations")
    @classmethod
    def _languages(
        cls, value: dict[str, Translation], info: ValidationInfo
    ) -> dict[str, Translation]:
        others = [code for code in _ward(info).language_codes if code != "ja"]
        _check_codes(list(value), others, "translation language")
        return value

    @property
    def scheduled_for(self) -> datetime | None:
        return None

    @property
    def effective_at(self) -> datetime:
        """When the notice is published: its schedule, else when it was received."""
        when = self.scheduled_for or self.received_at
        if when is None:
            raise ValueError("the notice has not been received yet")
        return when

    def title_in(self, lang: str) -> str:
        return self.translations[lang].title if lang in self.translations else self.title

    def body_in(self, lang: str) -> str:
        return self.translations[lang].body if lang in self.translations else self.body


class Announcement(Notice):
    """An announcement as staff post it (HTTP) and as other systems queue it (intake stream).

    With a ``now`` in the context, a ``publish_at`` in the past is an error (at intake);
    without one it means "at once".
    """

    kind: Literal["announcement"] = "announcement"
    topics: TopicCodes = Field(min_length=1)
    publish_at: PublishAt | None = None

    @property
    def scheduled_for(self) -> datetime | None:
        return self.publish_at

    @field_validator("publish_at")
    @classmethod
    def _future(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        now = (info.context or {}).get("now")
        if value is None or now is None:
            return value
        if value <= now:
            raise ValueError("is in the past; leave it out to publish at once")
        if value - now > MAX_SCHEDULE_AHEAD:
            raise ValueError("is more than a year ahead")
        return value


Severity = Literal["advisory", "warning", "emergency"]
AlertType = Literal["alert", "update", "cancel"]


class ListedShelter(BaseModel):
    """A shelter as an alert lists it: open when the alert was issued (notifier/shelters.py)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=100)
    address: str = Field(max_length=200)
    map: str = Field(max_length=300)  # the shelter on a map: a link anyone can open


class Alert(Notice):
    """A disaster broadcast from the emergency desk. It goes out at once, on the urgent
    lane, to everyone in its areas whatever topics they chose.

    ``supersedes`` names the alert an update replaces; ``type`` and ``references`` are set
    by the service (an update or the all-clear of ``references``); ``drill`` sends it to
    the test audience only, marked as a drill (訓練).
    """

    kind: Literal["alert"] = "alert"
    severity: Severity  # when left out, the level's (notifier/levels.severity_of)
    level: int | None = Field(default=None, ge=1, le=5)  # 警戒レベル (notifier/levels.py)
    hazard: Hazard | None = None  # what it is for: the shelters it lists are designated so
    history: list[int] = Field(default_factory=list)  # the levels of the alerts it follows
    shelters: list[ListedShelter] = Field(default_factory=list)  # open ones, when issued
    supersedes: str | None = Field(default=None, pattern=NOTICE_ID)
    type: AlertType = "alert"
    references: str | None = Field(default=None, pattern=NOTICE_ID)
    drill: bool = False

    @property
    def topics(self) -> list[str]:
        return []

    @model_validator(mode="before")
    @classmethod
    def _severity(cls, data: Any) -> Any:
        level = data.get("level") if isinstance(data, dict) else None
        if isinstance(data, dict) and "severity" not in data and type(level) is int:
            return {**data, "severity": severity_of(level)}  # a bad level is refused as such
        return data

    @model_validator(mode="after")
    def _type(self) -> Alert:
        if self.supersedes and self.type == "alert":
            self.type = "update"
            self.references = self.supersedes
        if self.type != "alert" and not self.references:
            article = "an" if self.type == "update" else "a"
            raise ValueError(f"references: {article} {self.type} names the alert it follows")
        return self


AnyNotice = Announcement | Alert
_NOTICE: TypeAdapter[AnyNotice] = TypeAdapter(Annotated[AnyNotice, Field(discriminator="kind")])


def parse_notice(data: dict[str, Any], context: dict[str, Any]) -> AnyNotice:
    """An announcement or alert from its JSON (an entry without ``kind`` is an announcement)."""
    if "kind" not in data:
        data = {**data, "kind": "announcement"}
    return _NOTICE.validate_python(data, context=context)


class Subscriber(BaseModel):
    """A resident on one channel. ``address``: what the channel reaches them at (its
    ``ChannelSpec.address``: a LINE user id, an email or postal address, a phone number)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    channel: Annotated[str, AfterValidator(_subscribed)]
    address: str = Field(min_length=1, max_length=300)
    name: str = Field(default="", max_length=100)
    areas: AreaCodes = Field(default_factory=list)
    topics: TopicCodes = Field(default_factory=list)
    language: str = "ja"

    @field_validator("language")
    @classmethod
    def _language(cls, value: str, info: ValidationInfo) -> str:
        _check_codes([value], _ward(info).language_codes, "language")
        return value

    @field_validator("address", "name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("must not contain control characters (tabs, line breaks …)")
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str, info: ValidationInfo) -> str:
        """Checked as its channel needs (the channel comes first, so it is known here)."""
        channel = channel_registry.REGISTRY.get(info.data.get("channel", ""))
        address = channel.address if channel else None
        if address == "line_user_id" and not LINE_USER_ID.match(value):
            raise ValueError("a LINE user id is U followed by 32 hex digits")
        if address == "phone" and not PHONE.match(value):
            raise ValueError("a phone number is written +81 and the number without its 0")
        if address == "email":
            try:
                return str(validate_email(value, check_deliverability=False).normalized)
            except EmailNotValidError as e:
                raise ValueError(f"not a valid email address ({e})") from None
        return value

    @model_validator(mode="after")
    def _name(self) -> Subscriber:
        if channel_registry.spec(self.channel).address == "postal" and not self.name:
            raise ValueError("name: a resident who receives print needs a name for the envelope")
        return self


class Invalid(ValueError):
    """A notice (or an alert, a CAP message, a form) that fails validation: ``fields``
    has one message per field, as ``field_errors`` words them."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def field_errors(error: ValidationError) -> dict[str, str]:
    """Turn pydantic's errors into ``{"field": "message"}``, one message a field.

    Messages never repeat the rejected value: it may be personal data.
    """
    fields: dict[str, str] = {}
    for item in error.errors(include_url=False, include_input=False):
        loc = [str(part) for part in item["loc"]]
        message = str(item["msg"]).removeprefix("Value error, ")
        if not loc and ": " in message:  # model-level checks name their field first
            name, message = message.split(": ", 1)
            loc = [name]
        # a list item's error belongs to the list
        while loc and loc[-1].isdigit():
            loc.pop()
        fields.setdefault(".".join(loc) or "body", message)
    return fields
