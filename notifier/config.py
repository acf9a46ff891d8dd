"""One typed settings object: config/notifier.toml, overridden by NOTIFIER_* variables."""

from __future__ import annotations

import re
import tomllib
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from notifier import channel_registry

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "notifier.toml"


KANJI = re.compile(r"[\u3005\u4e00-\u9fff]")
KANA = re.compile(r"^[\u3041-\u309f\u30a0-\u30ff]{1,40}$")
MAX_READINGS = 50


def check_readings(value: dict[str, str]) -> dict[str, str]:
    """Furigana for the printed headings: a word with kanji → its reading in kana."""
    if len(value) > MAX_READINGS:
        raise ValueError(f"at most {MAX_READINGS} readings")
    for word, reading in value.items():
        if not 0 < len(word) <= 20 or not KANJI.search(word) or "<" in word or "&" in word:
            raise ValueError(f"{word!r}: a word of up to 20 characters with kanji in it")
        if not KANA.match(reading):
            raise ValueError(f"the reading of {word!r} must be 1 to 40 kana")
    return value


class Named(BaseModel):
    code: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    name: str
    name_en: str | None = None
    names: dict[str, str] = Field(default_factory=dict)  # in the ward's other languages
    cap: list[str] = Field(default_factory=list)  # CAP geocode values or areaDesc names

    def label(self, lang: str) -> str:
        return _label(self.name, self.name_en, self.names, lang)


def _label(name: str, name_en: str | None, names: dict[str, str], lang: str) -> str:
    """A name as a reader of ``lang`` reads it: its own name in that language, else the
    English one for a reader of neither Japanese, else the Japanese."""
    if lang in names:
        return names[lang]
    if lang not in ("ja", "easy") and name_en:
        return name_en
    return name


class Ward(BaseModel):
    """The ward's own data: areas, topics and languages are configuration, not code."""

    name: str = "練馬区"
    name_en: str = "Nerima City"
    names: dict[str, str] = Field(default_factory=dict)  # in the ward's other languages
    phone: str = "03-3993-1111"
    # the ward's shelters and hazard map, linked from every alert (https; none: no link)
    hazard_map_url: str | None = None
    cap: list[str] = Field(default_factory=list)  # CAP geocodes / areaDesc for the whole ward
    readings: dict[str, str] = Field(default_factory=dict)  # furigana for every heading
    areas: list[Named]
    topics: list[Named]
    languages: list[Named]

    @field_validator("readings")
    @classmethod
    def _readings(cls, value: dict[str, str]) -> dict[str, str]:
        return check_readings(value)

    @model_validator(mode="after")
    def _check(self) -> Ward:
        for kind in ("areas", "topics", "languages"):
            codes = [item.code for item in getattr(self, kind)]
            if len(codes) != len(set(codes)):
                raise ValueError(f"ward.{kind} has a code twice")
            if not codes:
                raise ValueError(f"ward.{kind} is empty")
        if "ja" not in self.language_codes:
            raise ValueError("ward.languages must include ja")
        offered = set(self.language_codes)
        for names in [self.names, *(item.names for item in [*self.areas, *self.topics])]:
            unknown = sorted(set(names) - offered)
            if unknown:
                raise ValueError(f"names in {', '.join(unknown)}: not a language of ward.languages")
        return self

    @field_validator("hazard_map_url")
    @classmethod
    def _hazard_map(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("the hazard map's address must start with https://")
        return value

    @property
    def tel(self) -> str:
        """The ward's number as a link a phone dials (``tel:0339931111``)."""
        return "tel:" + re.sub(r"[^0-9+]", "", self.phone)

    def label(self, lang: str) -> str:
        """The ward's name as a reader of ``lang`` reads it."""
        return _label(self.name, self.name_en, self.names, lang)

    @property
    def area_codes(self) -> list[str]:
        return [a.code for a in self.areas]

    @property
    def topic_codes(self) -> list[str]:
        return [t.code for t in self.topics]

    @property
    def language_codes(self) -> list[str]:
        return [lang.code for lang in self.languages]

    def cap_area(self, value: str) -> list[str] | None:
        """The ward areas a CAP geocode value or areaDesc names ([] = the whole ward)."""
        if value in self.cap:
            return []
        codes = [a.code for a in self.areas if value in a.cap]
        return codes or None

    def area(self, code: str) -> Named:
        return next(a for a in self.areas if a.code == code)

    def topic(self, code: str) -> Named:
        return next(t for t in self.topics if t.code == code)


def sentinel_hosts(value: str) -> list[tuple[str, int]]:
    """``"10.0.0.1:26379,sentinel-b:26379"`` as (host, port) pairs."""
    hosts = []
    for item in (part.strip() for part in value.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"each Sentinel is host:port, such as 127.0.0.1:26379 (not {item!r})")
        hosts.append((host.strip("[]"), int(port)))
    return hosts


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "notifier:"
    redis_max_connections: int = Field(256, ge=8)  # per process; a task waits for a free one
    # Sentinel: "host:port,host:port,…"; when set, the master Sentinel names is used (the
    # URL's database and password still apply) and followed through a failover
    redis_sentinels: str | None = None
    redis_sentinel_master: str = "notifier"
    redis_sentinel_password: SecretStr | None = None
    # replicas that must hold a notice before the API accepts it (None: 1 under Sentinel,
    # 0 with a single Redis), and how long to wait for them, in seconds
    redis_min_replicas: int | None = Field(None, ge=0)
    redis_replica_timeout: float = Field(0.5, gt=0, le=30)
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8080"
    outbox_dir: Path = Path("./var/outbox")
    print_dir: Path = Path("./var/print")
    timezone: str = "Asia/Tokyo"
    digest_cron: str = "0 6 * * mon"
    print_font_size: int = Field(16, ge=16, le=22)  # the digest's body text, in points
    print_mail: Literal["each", "merged"] = "merged"  # mailing copies: a file each, or one
    print_command: str | None = None  # run with each flyer's path, e.g. "lp -d ward-office"
    print_furigana: bool = False  # readings over the kanji of printed headings
    print_warm_up: bool = True  # start the PDF process at start-up, not at the first flyer

    line_channel_access_token: SecretStr | None = None
    line_channel_secret: SecretStr | None = None
    line_api_url: str = "https://api.line.me"
    # requests a second, all processes together: LINE's published limit less 5 % (LINE
    # refuses what goes over it with 429 and does not process it)
    line_rate_limit: float = Field(190.0, gt=0)  # multicast: LINE allows 200/s
    line_reply_rate_limit: float = Field(1900.0, gt=0)  # reply: LINE allows 2,000/s
    line_timeout: float = Field(10.0, gt=0)
    line_pause_seconds: float = Field(600.0, gt=0)  # after the monthly limit, try again then
    x_consumer_key: SecretStr | None = None
    x_consumer_secret: SecretStr | None = None
    x_access_token: SecretStr | None = None
    x_access_token_secret: SecretStr | None = None
    x_api_url: str = "https://api.twitter.com"
    x_hashtags: list[str] = Field(default_factory=lambda: ["#練馬区"])
    x_max_posts: int = Field(5, ge=1, le=25)  # the longest thread a notice may become
    # posts X takes from the account: per user in any 15 minutes, per app in any 24 hours
    # (X API v2 POST /2/tweets); older tiers are set here too (the free tier: 17 a day)
    x_15min_limit: int = Field(100, ge=1)
    x_daily_limit: int = Field(10_000, ge=1)
    x_alert_reserve: int = Field(3, ge=0)  # of each window's posts, kept back for alerts
    x_timeout: float = Field(10.0, gt=0)
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    mail_from: str | None = None
    smtp_pool: int = Field(16, ge=1, le=64)  # long-lived SMTP connections per worker process
    smtp_timeout: float = Field(30.0, gt=0)
    email_hard_bounces: int = Field(3, ge=1)  # permanent failures before an address is suspended
    secret_key: SecretStr | None = None
    secret_key_previous: SecretStr | None = None  # the old key, while `rotate-key` runs

    alert_approval: bool = False  # on: a second emergency-desk token approves each alert
    alert_test_audience: list[str] = Field(default_factory=list)  # subscriber ids for drills
    cap_max_bytes: int = Field(64 * 1024, ge=1024)
    quiet_hours: str | None = Field("21:00-08:00", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    quiet_channels: list[str] = Field(default_factory=channel_registry.quiet)
    breaker_failures: int = Field(5, ge=1)  # failed batches in a row that open a channel's circuit
    breaker_seconds: float = Field(30.0, gt=0)  # how long it stays open before a trial

    # the JMA reader (docs/jma.md): off when there are no feeds or no areas
    jma_feeds: list[str] = Field(
        default_factory=lambda: [
            "https://www.data.jma.go.jp/developer/xml/feed/extra.xml",
            "https://www.data.jma.go.jp/developer/xml/feed/eqvol.xml",
        ]
    )
    jma_interval: float = Field(60.0, ge=60)  # the high-frequency feeds change once a minute
    jma_areas: list[str] = Field(default_factory=list)  # 練馬区: 1312000 (市町村等), 350 (地震)
    jma_intensity: Literal["1", "2", "3", "4", "5-", "5+", "6-", "6+", "7"] = "4"
    jma_auto_issue: list[str] = Field(default_factory=list)  # kinds sent without approval

    visibility_timeout: float = Field(60.0, gt=0)
    max_attempts: int = Field(8, ge=1)
    retry_base_delay: float = Field(2.0, gt=0)
    worker_concurrency: int = Field(8, ge=1, le=256)
    line_batch_size: int = Field(500, ge=1, le=500)
    email_batch_size: int = Field(50, ge=1)
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    api_rate_per_token: int = Field(600, ge=1)  # API requests a minute one token may make
    api_rate_per_ip: int = Field(1200, ge=1)  # API requests a minute from one client address
    signin_rate_per_ip: int = Field(10, ge=1)  # console sign-in attempts per 5 minutes
    session_idle_minutes: int = Field(30, ge=1)  # a console session ends when idle this long
    session_hours: int = Field(8, ge=1)  # and in any case this long after sign-in

    ward: Ward

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; for example Asia/Tokyo") from None
        return value

    @field_validator("quiet_hours", mode="before")
    @classmethod
    def _quiet_off(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.lower() in ("", "off", "none") else value

    @field_validator("quiet_channels")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        known = channel_registry.names()
        unknown = [c for c in value if c not in known]
        if unknown:
            raise ValueError(f"unknown channel {', '.join(unknown)}; known: {', '.join(known)}")
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _sentinels(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        sentinel_hosts(value)  # each host:port, or a message naming the one at fault
        return value

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return sentinel_hosts(self.redis_sentinels) if self.redis_sentinels else []

    @property
    def min_replicas(self) -> int:
        if self.redis_min_replicas is not None:
            return self.redis_min_replicas
        return 1 if self.redis_sentinels else 0

    @field_validator("public_url", "line_api_url", "x_api_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file's values, which arrive as init arguments.
        return env_settings, init_settings

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def quiet_until(self, channel: str, now: datetime) -> datetime | None:
        """When the quiet hours that hold ``channel``'s routine notices end, if they hold
        it at ``now``; None when it may send."""
        if not self.quiet_hours or channel not in self.quiet_channels:
            return None
        start, end = (time.fromisoformat(t) for t in self.quiet_hours.split("-"))
        local = now.astimezone(self.tz)
        clock = local.time().replace(tzinfo=None)
        inside = start <= clock < end if start <= end else clock >= start or clock < end
        if not inside:
            return None
        until = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
        return until if until > local else until + timedelta(days=1)

    def live(self, channel: str) -> bool:
        """Whether a channel sends for real: it is one that sends, and its credentials are
        set (else: outbox mode)."""
        return channel_registry.spec(channel).live and not self.missing_credentials(channel)

    def missing_credentials(self, channel: str) -> list[str]:
        return channel_registry.spec(channel).missing(self)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (default config/notifier.toml), then let NOTIFIER_* win."""
    path = path or DEFAULT_CONFIG
    with path.open("rb") as fh:
        values: dict[str, Any] = tomllib.load(fh)
    values.update(overrides)
    return Settings(**values)
