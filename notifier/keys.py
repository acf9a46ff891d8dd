"""Every Redis key the service uses, in one place, under one prefix."""

from __future__ import annotations

from dataclasses import dataclass

LANES = ("urgent", "normal")


@dataclass(frozen=True)
class Keys:
    prefix: str

    # intake and its dead-letter stream
    @property
    def intake(self) -> str:
        return f"{self.prefix}intake"

    @property
    def intake_urgent(self) -> str:
        """Alerts' intake: the dispatcher reads it apart, so no routine notice delays one."""
        return f"{self.prefix}intake:urgent"

    def intake_lane(self, lane: str) -> str:
        return self.intake_urgent if lane == "urgent" else self.intake

    @property
    def rejected(self) -> str:
        return f"{self.prefix}intake:rejected"

    # notices
    def notice(self, notice_id: str) -> str:
        return f"{self.prefix}notice:{notice_id}"

    def progress(self, notice_id: str) -> str:
        return f"{self.prefix}progress:{notice_id}"

    def rendered(self, notice_id: str) -> str:
        return f"{self.prefix}rendered:{notice_id}"

    def done_batches(self, notice_id: str, channel: str) -> str:
        return f"{self.prefix}done:{notice_id}:{channel}"

    def failures(self, notice_id: str) -> str:
        return f"{self.prefix}failures:{notice_id}"

    @property
    def notices(self) -> str:
        return f"{self.prefix}notices"

    def cap_message(self, sender: str, identifier: str) -> str:
        """A CAP message (sender, identifier) → the alert it became."""
        return f"{self.prefix}cap:{sender},{identifier}"

    @property
    def audit(self) -> str:
        """The append-only audit log (a stream): who did what, when, from where."""
        return f"{self.prefix}audit"

    def breaker(self, channel: str) -> str:
        """Failed batches of a channel in a row; past the threshold its circuit opens."""
        return f"{self.prefix}breaker:{channel}"

    @property
    def scheduled(self) -> str:
        return f"{self.prefix}scheduled"

    def idempotency(self, digest: str) -> str:
        return f"{self.prefix}idem:{digest}"

    # delivery
    def delivery(self, channel: str, lane: str) -> str:
        return f"{self.prefix}deliver:{channel}:{lane}"

    def audience(self, notice_id: str, channel: str, lang: str) -> str:
        """The ids already cut into batches for (notice, channel, language), while the
        audience is being cut (notifier/cutting.py); ``…:carry`` holds those short of a
        full batch."""
        return f"{self.prefix}aud:{notice_id}:{channel}:{lang}"

    def drill_audience(self, notice_id: str) -> str:
        """The test audience a drill may reach (while it is being cut)."""
        return f"{self.prefix}aud:{notice_id}:drill"

    def cut_counter(self, notice_id: str) -> str:
        """A notice's cut: batch numbers handed out per channel, its shares and cursors."""
        return f"{self.prefix}cut:{notice_id}"

    def batch_log(self, notice_id: str) -> str:
        return f"{self.prefix}batches:{notice_id}"

    def line_event(self, webhook_event_id: str) -> str:
        return f"{self.prefix}line:event:{webhook_event_id}"

    def x_thread(self, notice_id: str) -> str:
        """The ids of a notice's posts on X, by position in its thread."""
        return f"{self.prefix}x:thread:{notice_id}"

    def x_unsure(self, notice_id: str, index: int) -> str:
        """Set while a post is being sent: if it is still there, the outcome is unknown."""
        return f"{self.prefix}x:unsure:{notice_id}:{index}"

    @property
    def x_posts(self) -> str:
        """The account's posts of the last 24 hours (a sorted set: ``<notice>:<post>`` by
        the time it was reserved, then posted), shared by every worker."""
        return f"{self.prefix}x:posts"

    @property
    def x_blocked(self) -> str:
        """Set when X said no more posts until a time (epoch seconds); expires then."""
        return f"{self.prefix}x:blocked"

    @property
    def x_said(self) -> str:
        """What X's last create-post answer said of each window: ``remaining|at|reset``
        (epoch seconds), so that posts made meanwhile by another tool on the same account
        are counted too."""
        return f"{self.prefix}x:said"

    def rate_limit(self, name: str) -> str:
        return f"{self.prefix}rate:{name}"

    def paused(self, channel: str) -> str:
        return f"{self.prefix}paused:{channel}"

    @property
    def retries(self) -> str:
        return f"{self.prefix}retry"

    @property
    def stats(self) -> str:
        return f"{self.prefix}stats"

    def digest_pool(self, area: str) -> str:
        return f"{self.prefix}digest:{area}"

    def digest_built(self, week: str) -> str:
        """Set once a week's digest is built (or being built), so it is built once."""
        return f"{self.prefix}digest-built:{week}"

    # subscribers
    def subscriber(self, subscriber_id: str) -> str:
        return f"{self.prefix}subscriber:{subscriber_id}"

    @property
    def contacts(self) -> str:
        """Subscriber id → [address, name]: personal data, kept apart from the choices."""
        return f"{self.prefix}sub:contacts"

    def scratch(self, name: str) -> str:
        return f"{self.prefix}tmp:{name}"

    @property
    def unsubscribe_tokens(self) -> str:
        """Opaque unsubscribe token → subscriber id."""
        return f"{self.prefix}sub:unsub"

    @property
    def unsubscribe_tokens_by_id(self) -> str:
        return f"{self.prefix}sub:unsub-by-id"

    @property
    def bounces(self) -> str:
        """Subscriber id → permanent delivery failures so far."""
        return f"{self.prefix}sub:bounces"

    def confirmation(self, token: str) -> str:
        """A subscription waiting for its confirmation link (48 h)."""
        return f"{self.prefix}confirm:{token}"

    @property
    def census(self) -> str:
        """How many subscribers made each set of choices: ``channel|areas|topics|language``
        → count (no ids), kept beside the index and apart from it, so that a notice's
        audience can be counted when it is planned and its cut checked against that."""
        return f"{self.prefix}sub:census"

    def suspended(self, channel: str) -> str:
        """Subscribers whose address keeps failing: kept, but no longer sent to."""
        return f"{self.prefix}sub:suspended:{channel}"

    def mailed(self, notice_id: str) -> str:
        """Subscriber ids a notice's email has reached: nothing is sent to them twice."""
        return f"{self.prefix}mailed:{notice_id}"

    @property
    def subscriber_lookup(self) -> str:
        return f"{self.prefix}sub:lookup"

    # The subscriber index: sorted sets of subscriber ids, every score 0, so that members
    # are in the order of their ids on any copy of the data (a restarted Redis, a promoted
    # replica) and a walk can resume after the last id it took (ZRANGE … BYLEX).
    def by_channel(self, channel: str) -> str:
        return f"{self.prefix}idx:channel:{channel}"

    def by_area(self, area: str) -> str:
        return f"{self.prefix}idx:area:{area}"

    def by_topic(self, topic: str) -> str:
        return f"{self.prefix}idx:topic:{topic}"

    def by_language(self, language: str) -> str:
        return f"{self.prefix}idx:lang:{language}"

    def by_channel_language(self, channel: str, language: str) -> str:
        """Those of ``channel`` who read ``language``: a whole-ward share of a notice is
        walked straight from it, with nothing to check member by member."""
        return f"{self.prefix}idx:reach:{channel}:{language}"

    @property
    def reach_built(self) -> str:
        """Set once the by-channel-and-language sets hold the whole index (built from the
        channel and language sets by the first process of the version that keeps them)."""
        return f"{self.prefix}idx:reach"

    def index_before(self, key: str) -> str:
        """Where an index key stood as a plain set, before the index was ordered."""
        return key.replace(f"{self.prefix}idx:", f"{self.prefix}sub:", 1)

    # tokens
    @property
    def tokens(self) -> str:
        return f"{self.prefix}tokens"

    @property
    def token_hashes(self) -> str:
        return f"{self.prefix}token-hashes"

    # the console
    @property
    def accounts(self) -> str:
        """Staff accounts: name → role and argon2 hash."""
        return f"{self.prefix}accounts"

    def session(self, session_id: str) -> str:
        """A console session (who, role, CSRF token); expires when idle."""
        return f"{self.prefix}session:{session_id}"

    @property
    def session_key(self) -> str:
        """The key that signs session cookies when NOTIFIER_SECRET_KEY is not set (a trial)."""
        return f"{self.prefix}session-key"

    # the JMA reader (notifier/jma_drafts.py, notifier/jma_feed.py)
    @property
    def jma_drafts(self) -> str:
        """Draft alerts from the JMA's telegrams: a sorted set of draft ids by creation."""
        return f"{self.prefix}jma:drafts"

    def jma_draft(self, draft_id: str) -> str:
        return f"{self.prefix}jma:draft:{draft_id}"

    def jma_seen(self, digest: str) -> str:
        """A telegram taken (by the digest of its key) → the draft it made, or ''."""
        return f"{self.prefix}jma:seen:{digest}"

    def jma_event(self, digest: str) -> str:
        """An event (by digest) → its latest draft, until its all-clear or cancellation."""
        return f"{self.prefix}jma:event:{digest}"

    def jma_feed(self, digest: str) -> str:
        """A feed (by the digest of its URL): its last Last-Modified."""
        return f"{self.prefix}jma:feed:{digest}"

    @property
    def jma_fetched(self) -> str:
        """Telegram URLs claimed for fetching (a sorted set by time), each fetched once."""
        return f"{self.prefix}jma:fetched"

    # shelters (notifier/shelters.py)
    @property
    def shelters(self) -> str:
        """The ward's shelters: id → the shelter's JSON, replaced whole by an import."""
        return f"{self.prefix}shelters"

    @property
    def shelters_open(self) -> str:
        """The open shelters: id → when the desk opened it (epoch seconds)."""
        return f"{self.prefix}shelters:open"


ALL = "_all"
"""The set member standing for 'no choice made': the whole ward, or every topic."""
