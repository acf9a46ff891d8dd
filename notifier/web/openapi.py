"""GET /api/openapi.json: the HTTP API as an OpenAPI 3.1 document, built once per application
from the settings, so that the ward's own area, topic and language codes are its enums."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from notifier import channel_registry, text
from notifier.config import KANA, KANJI, Settings
from notifier.hazards import HAZARDS
from notifier.models import LINE_USER_ID, NOTICE_ID
from notifier.store import STATUSES
from notifier.web.http import RUNTIME

OPENAPI = web.AppKey("openapi", bytes)
Schema = dict[str, Any]

DESCRIPTION = """\
{ward}'s notice service: staff post announcements, the emergency desk issues alerts, and
both reach residents on LINE, X, email and print.

Every operation under `/api/` except this document needs `Authorization: Bearer <token>`
(tokens come from `notifier token create`). Roles: `staff` (announcements, print
subscribers), `emergency` (what staff may, plus alerts), `admin` (everything); each
operation's description names the role it needs. No or unknown token → 401; a token
without the role → 403 (and an entry in the audit log).

Errors are JSON: `{{"error": {{"code", "message", "fields": {{field: message}}}}}}`.
Every route under `/api/` is rate limited ({per_token} requests a minute per token,
{per_ip} per client address: 429 with `Retry-After`), answers 503 while Redis does not,
and refuses a body over {max_body} bytes (413). A bad request changes nothing. Every GET
also answers HEAD, without a body.

Left out, because they are HTML pages for people and not an API: the staff console
(`/console…`) and the residents' email subscription pages (`/subscribe…`,
`/unsubscribe…`). docs/contract.md describes them."""


def document(settings: Settings) -> dict[str, Any]:
    """The whole document for the service these settings describe."""
    ward = settings.ward
    schemas = _schemas(settings)
    info = {
        "title": f"{ward.name_en} notices API",
        "version": "1",
        "description": DESCRIPTION.format(
            ward=ward.name_en,
            per_token=settings.api_rate_per_token,
            per_ip=settings.api_rate_per_ip,
            max_body=settings.max_body_bytes,
        ),
    }
    return {
        "openapi": "3.1.0",
        "info": info,
        "servers": [{"url": settings.public_url}],
        "tags": [{"name": name} for name in TAGS],
        "paths": _paths(settings),
        "components": {
            "schemas": schemas,
            "responses": _error_responses(),
            "parameters": _parameters(),
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait: until the rate limit's window closes"
                    " (429), or before trying again (503).",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (`notifier token create --role …`).",
                }
            },
        },
    }


TAGS = (
    "announcements",
    "alerts",
    "drafts",
    "shelters",
    "intake",
    "subscribers",
    "audit",
    "line",
    "service",
)
ERRORS = {
    400: ("BadRequest", "Invalid: `fields` names each bad field (or the JSON is bad)."),
    401: ("Unauthenticated", "No token, or an unknown or revoked one."),
    403: ("Forbidden", "The token does not grant the role this needs."),
    404: ("NotFound", "No such thing."),
    409: ("Conflict", "Its state does not allow this."),
    413: ("TooLarge", "The body is over NOTIFIER_MAX_BODY_BYTES."),
    422: ("IdempotencyConflict", "This Idempotency-Key was used with a different body."),
    429: ("TooManyRequests", "Over a rate limit; try again after `Retry-After` seconds."),
    503: (
        "Unavailable",
        "Redis is not answering (or, under Sentinel, no replica confirmed an announcement in"
        " time: `not_replicated`); try again after `Retry-After` seconds, with the same"
        " Idempotency-Key.",
    ),
}
LIMITED = (429, 503)  # what every /api/ route may answer


def _ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> Schema:
    return _ref("schemas", name)


def _json(schema: Schema, **extra: Any) -> Schema:
    return {"application/json": {"schema": schema, **extra}}


def _error_responses() -> dict[str, Schema]:
    responses: dict[str, Schema] = {}
    for name, description in ERRORS.values():
        responses[name] = {"description": description, "content": _json(_schema("Error"))}
    for limited in ("TooManyRequests", "Unavailable"):
        responses[limited]["headers"] = {"Retry-After": _ref("headers", "Retry-After")}
    return responses


def _parameters() -> dict[str, Schema]:
    return {
        "id": {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
        "Idempotency-Key": {
            "name": "Idempotency-Key",
            "in": "header",
            "description": "1–255 printable ASCII characters: a retry with the same key (for"
            " this token) returns the first answer for 24 hours.",
            "schema": {"type": "string", "pattern": "^[\\x20-\\x7e]{1,255}$"},
        },
    }


def _op(
    tag: str,
    operation_id: str,
    summary: str,
    responses: dict[int, Schema],
    *,
    role: str | None = None,
    errors: tuple[int, ...] = (),
    description: str = "",
    **extra: Any,
) -> Schema:
    """One operation: its own answers, then the error answers it may give, by reference."""
    answers: dict[str, Schema] = {str(status): r for status, r in responses.items()}
    for status in sorted({*errors, *(LIMITED if role else ())}):
        answers[str(status)] = _ref("responses", ERRORS[status][0])
    op: Schema = {"tags": [tag], "operationId": operation_id, "summary": summary}
    if role is not None:
        op["security"] = [{"bearer": []}]
        op["x-role"] = role
        description = f"Role: `{role}`. {description}".strip()
    else:
        op["security"] = []
    if description:
        op["description"] = description
    op.update(extra)
    op["responses"] = answers
    return op


def _ok(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": _json(schema)}


def _body(schema: Schema, required: bool = True, **extra: Any) -> Schema:
    return {"required": required, "content": _json(schema, **extra)}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "description": description, "schema": schema}


def _paths(settings: Settings) -> dict[str, Schema]:
    id_ = _ref("parameters", "id")
    view = _ok("The notice, its status and per-channel progress.", _schema("NoticeView"))
    alert_view = _ok("The alert, its state and per-channel progress.", _schema("AlertView"))
    accepted = _ok("Accepted.", _schema("Accepted"))
    return {
        "/api/announcements": {
            "post": _op(
                "announcements",
                "createAnnouncement",
                "Post an announcement",
                {202: _ok("Queued, or scheduled for its `publish_at`.", _schema("Accepted"))},
                role="staff",
                errors=(400, 401, 413, 422),
                parameters=[_ref("parameters", "Idempotency-Key")],
                requestBody=_body(
                    _schema("NewAnnouncement"), example=_example_announcement(settings)
                ),
            ),
            "get": _op(
                "announcements",
                "listAnnouncements",
                "List notices, newest first",
                {200: _ok("Notices of both kinds.", _list("announcements", _schema("NoticeView")))},
                role="staff",
                errors=(400, 401),
                parameters=[
                    _query("status", {"type": "string", "enum": list(STATUSES)}, "Only these."),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                        "How many at most.",
                    ),
                ],
            ),
        },
        "/api/announcements/{id}": {
            "parameters": [id_],
            "get": _op(
                "announcements",
                "getAnnouncement",
                "A notice and its delivery progress",
                {200: view},
                role="staff",
                errors=(401, 404),
                description="Alerts too (their own route adds nothing but the check of kind).",
            ),
            "delete": _op(
                "announcements",
                "cancelAnnouncement",
                "Cancel a scheduled or queued announcement",
                {200: _ok("Cancelled.", _schema("Cancelled"))},
                role="staff",
                errors=(401, 404, 409),
                description="409 once it is dispatching, done or cancelled; 404 for an alert"
                " too (the emergency desk calls an alert off: `POST /api/alerts/{id}/cancel`).",
            ),
        },
        "/api/intake/rejected": {
            "get": _op(
                "intake",
                "listRejected",
                "Intake stream entries that failed validation (newest 100)",
                {200: _ok("The entries and why.", _list("rejected", _schema("Rejected")))},
                role="staff",
                errors=(401,),
            )
        },
        "/api/subscribers": {
            "post": _op(
                "subscribers",
                "saveSubscriber",
                "Register a subscriber, or update one already subscribed",
                {
                    201: _ok("Registered.", _schema("SubscriberSaved")),
                    200: _ok(
                        "Already subscribed: its choices are updated.", _schema("SubscriberSaved")
                    ),
                },
                role="staff",
                errors=(400, 401, 403, 413),
                description="Staff may register `print` residents; other channels need `admin`"
                " (403). The token is checked before the body is read.",
                requestBody=_body(_schema("NewSubscriber")),
            )
        },
        "/api/subscribers/{id}": {
            "parameters": [id_],
            "get": _op(
                "subscribers",
                "getSubscriber",
                "A subscriber: channel, choices, the address masked",
                {200: _ok("The subscriber.", _schema("Subscriber"))},
                role="admin",
                errors=(401, 403, 404),
            ),
            "delete": _op(
                "subscribers",
                "deleteSubscriber",
                "Remove a subscriber and its data",
                {200: _ok("Removed.", _schema("SubscriberDeleted"))},
                role="admin",
                errors=(401, 403, 404),
            ),
        },
        "/api/alerts": {
            "post": _op(
                "alerts",
                "issueAlert",
                "Issue an alert, as JSON or as a CAP 1.2 document",
                {202: _ok("Queued, or pending approval.", _schema("Accepted"))},
                role="emergency",
                errors=(400, 401, 403, 404, 409, 413, 422),
                description="A CAP document (`application/cap+xml`; `application/xml` and "
                f"`text/xml` are read the same way) of at most {settings.cap_max_bytes} bytes"
                " with no DTD: a bad one → 400 `invalid_cap` naming the element. The same CAP"
                " message again answers with the alert it became. 404: `supersedes` or the"
                " CAP `references` are unknown; 409: the alert it follows is no longer"
                " active. With an `Idempotency-Key`, a retry answers as the first request"
                " did and issues nothing more.",
                parameters=[
                    _query("drill", {"type": "boolean", "default": False}, "A drill (訓練)."),
                    _ref("parameters", "Idempotency-Key"),
                ],
                requestBody={
                    "required": True,
                    "content": {
                        **_json(_schema("NewAlert"), example=_example_alert(settings)),
                        **{
                            kind: {"schema": _schema("CapDocument")}
                            for kind in ("application/cap+xml", "application/xml", "text/xml")
                        },
                    },
                },
            ),
            "get": _op(
                "alerts",
                "listAlerts",
                "The newest 100 alerts",
                {200: _ok("Alerts, newest first.", _list("alerts", _schema("AlertView")))},
                role="staff",
                errors=(401,),
            ),
        },
        "/api/alerts/{id}": {
            "parameters": [id_],
            "get": _op(
                "alerts",
                "getAlert",
                "An alert: state, who asked and approved, progress",
                {200: alert_view},
                role="staff",
                errors=(401, 404),
            ),
        },
        "/api/alerts/{id}/cancel": {
            "parameters": [id_],
            "post": _op(
                "alerts",
                "cancelAlert",
                "The all-clear of an active alert; withdraws one pending approval",
                {
                    202: _ok("The all-clear, a new alert.", _schema("AllClear")),
                    200: _ok(
                        "Withdrawn before approval: nothing had gone out.", _schema("Cancelled")
                    ),
                },
                role="emergency",
                errors=(400, 401, 403, 404, 409, 413, 422),
                description="409: already superseded, cancelled, or an all-clear itself. With"
                " an `Idempotency-Key`, a retry answers with the one all-clear.",
                parameters=[_ref("parameters", "Idempotency-Key")],
                requestBody=_body(_schema("AllClearWords"), required=False),
            ),
        },
        "/api/alerts/{id}/approve": {
            "parameters": [id_],
            "post": _op(
                "alerts",
                "approveAlert",
                "Approve an alert waiting for approval",
                {202: accepted},
                role="emergency",
                errors=(401, 403, 404, 409),
                description="By the token that asked → 403 `same_person`; not waiting → 409.",
            ),
        },
        "/api/shelters": {
            "get": _op(
                "shelters",
                "listShelters",
                "The ward's shelters, and which are open",
                {200: _ok("Shelters.", _list("shelters", _schema("Shelter")))},
                role="staff",
                errors=(401, 403),
                description="Imported with `notifier shelters import FILE.csv` (the national"
                " open-data format; README). An alert lists the open ones of its areas"
                " designated for its hazard.",
            ),
        },
        "/api/shelters/{id}/open": {
            "parameters": [id_],
            "post": _op(
                "shelters",
                "openShelter",
                "Open a shelter (opening an open one keeps when it opened)",
                {200: _ok("The shelter.", _schema("Shelter"))},
                role="emergency",
                errors=(401, 403, 404),
            ),
        },
        "/api/shelters/{id}/close": {
            "parameters": [id_],
            "post": _op(
                "shelters",
                "closeShelter",
                "Close a shelter",
                {200: _ok("The shelter.", _schema("Shelter"))},
                role="emergency",
                errors=(401, 403, 404),
            ),
        },
        "/api/drafts": {
            "get": _op(
                "drafts",
                "listDrafts",
                "The JMA's drafts, newest first (100)",
                {200: _ok("Drafts.", _list("drafts", _schema("Draft")))},
                role="emergency",
                errors=(401, 403),
                description="Each warning or earthquake telegram of the JMA for the ward's"
                " configured areas becomes a draft alert waiting for the desk (see"
                " docs/jma.md).",
            ),
        },
        "/api/drafts/{id}": {
            "parameters": [id_],
            "get": _op(
                "drafts",
                "getDraft",
                "One draft",
                {200: _ok("The draft.", _schema("Draft"))},
                role="emergency",
                errors=(401, 403, 404),
            ),
        },
        "/api/drafts/{id}/approve": {
            "parameters": [id_],
            "post": _op(
                "drafts",
                "approveDraft",
                "Issue a draft as an alert (an update or the all-clear of its event's alert)",
                {202: accepted},
                role="emergency",
                errors=(400, 401, 403, 404, 409),
                description="Issued once, however often approved: a second approval answers"
                " with the first one's alert. Dismissed, or an all-clear of an alert never"
                " issued → 409.",
            ),
        },
        "/api/drafts/{id}/dismiss": {
            "parameters": [id_],
            "post": _op(
                "drafts",
                "dismissDraft",
                "Dismiss a draft",
                {200: _ok("Dismissed.", _schema("Dismissed"))},
                role="emergency",
                errors=(401, 403, 404, 409),
            ),
        },
        "/api/audit": {
            "get": _op(
                "audit",
                "listAudit",
                "The audit log, newest first",
                {200: _ok("Entries.", _list("audit", _schema("AuditEntry")))},
                role="admin",
                errors=(400, 401, 403),
                parameters=[
                    _query(
                        "count",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                        "How many at most.",
                    ),
                    _query(
                        "before",
                        {"type": "string", "pattern": r"^\d{1,20}-\d{1,20}$"},
                        "Entries up to this entry id (inclusive), for paging: two numbers"
                        " of at most 64 bits (a Redis stream id).",
                    ),
                ],
            )
        },
        "/api/openapi.json": {
            "get": _op(
                "service",
                "getOpenApi",
                "This document",
                {200: _ok("OpenAPI 3.1.", {"type": "object"})},
                errors=LIMITED,
            )
        },
        "/line/webhook": {
            "post": _op(
                "line",
                "lineWebhook",
                "LINE's webhook: the residents' subscription conversation",
                {200: _ok("Taken.", {"type": "object", "maxProperties": 0})},
                errors=(400, 401, 413, 503),
                description="The signature (`X-Line-Signature`, HMAC-SHA256 of the body with "
                "the channel secret) is checked first: missing → 400, wrong → 401, and nothing"
                " changes. Then a body that is not a LINE webhook payload → 400; each event is"
                " taken on its own (one LINE does not document is logged and skipped) and each"
                " `webhookEventId` once. Without LINE configured → 503.",
                parameters=[
                    {
                        "name": "X-Line-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                requestBody=_body(_schema("LineWebhook")),
            )
        },
        "/alerts.atom": {
            "get": _op(
                "alerts",
                "alertFeed",
                "The public feed of the ward's alerts (Atom 1.0, each entry its CAP 1.2)",
                {
                    200: _cached(
                        "Every active alert and every other sent in the last 7 days, newest"
                        " first, at most 50; no drills, none pending approval or withdrawn.",
                        "application/atom+xml",
                    ),
                    304: {"description": "Not modified (If-None-Match or If-Modified-Since)."},
                },
                errors=LIMITED,
                description="No token. Each entry carries its CAP document as content of type"
                " `application/cap+xml` and links to `/alerts/{id}.cap`.",
            )
        },
        "/alerts/{id}.cap": {
            "parameters": [id_],
            "get": _op(
                "alerts",
                "alertCap",
                "One alert of the public feed as a CAP 1.2 document",
                {
                    200: _cached("The CAP 1.2 document.", "application/cap+xml"),
                    304: {"description": "Not modified (If-None-Match or If-Modified-Since)."},
                },
                errors=(404, *LIMITED),
                description="No token. 404 for an alert not in the public feed's kinds.",
            ),
        },
        "/healthz": {
            "get": _op(
                "service",
                "healthz",
                "The process runs",
                {200: _ok("Running.", _status_only("ok"))},
            )
        },
        "/readyz": {
            "get": _op(
                "service",
                "readyz",
                "Redis answers",
                {
                    200: _ok(
                        "Ready; `paused` lists channels holding their batches.", _schema("Ready")
                    ),
                    503: _ok("Redis is not answering.", _schema("NotReady")),
                },
            )
        },
        "/metrics": {
            "get": _op(
                "service",
                "metrics",
                "Prometheus metrics",
                {
                    200: {
                        "description": f"The text exposition format (`{CONTENT_TYPE_LATEST}`).",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                errors=(503,),
            )
        },
    }


def _cached(description: str, media_type: str) -> Schema:
    text = {"schema": {"type": "string"}}
    headers = {name: {"schema": {"type": "string"}} for name in ("ETag", "Last-Modified")}
    return {"description": description, "headers": headers, "content": {media_type: text}}


def _list(key: str, item: Schema) -> Schema:
    return _object({key: {"type": "array", "items": item}})


def _object(properties: dict[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    """A closed object: every property required but the ``optional`` ones."""
    return {
        "type": "object",
        "properties": properties,
        "required": [p for p in properties if p not in optional],
        "additionalProperties": False,
    }


def _status_only(value: str) -> Schema:
    return _object({"status": {"const": value}})


_STRING: Schema = {"type": "string"}
_NULLABLE: Schema = {"type": ["string", "null"]}
_WHEN: Schema = {"type": "string", "format": "date-time"}
_COUNT: Schema = {"type": "integer", "minimum": 0}
_BOOL: Schema = {"type": "boolean"}
# the text rule (notifier/text.py): no control character (C0, DEL, C1), direction
# control, byte order mark or noncharacter; a title is one line, a body keeps its line
# breaks (CR, CRLF, U+2028 become LF, U+2029 a blank line) and its tabs become spaces
_UNPRINTED = (
    r"\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufdd0-\ufdef\ufeff\ufffe\uffff"
)
TITLE: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 100,
    "pattern": rf"^[^\u0000-\u001f\u2028\u2029{_UNPRINTED}]*$",
    "description": "One line.",
}
BODY: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 5000,
    "pattern": rf"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f{_UNPRINTED}]*$",
    "description": "Line breaks are kept (CRLF and CR become LF); a tab becomes a space.",
}
URL: Schema = {
    "type": "string",
    "maxLength": text.LINK_LIMIT,
    # the shape of notifier/text.py's rule, in a form a generator can use quickly
    "pattern": r"^https://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:[0-9]{1,5})?"
    r"([/?#][A-Za-z0-9_.~!$&()*+,;=:@%/?#-]*)?$",
    "description": "An absolute https:// link as RFC 3986 writes it, with a host name (a port"
    " of at most 65535), no user name, no quotes, < > or \\ (other characters %-encoded).",
}
TRIMMED = "Surrounding white space is trimmed before the lengths are counted."


def _codes(values: list[str], **more: Any) -> Schema:
    return {"type": "array", "items": {"enum": values}, **more}


def _schemas(settings: Settings) -> dict[str, Schema]:
    ward = settings.ward
    areas = _codes(
        ward.area_codes,
        default=[],
        description="Area codes; `[]`, the default, means the whole ward.",
    )
    others = [code for code in ward.language_codes if code != "ja"]
    translation = _schema("Translation")
    translations = {
        "type": "object",
        "properties": dict.fromkeys(others, translation),
        "additionalProperties": False,
        "description": "The notice in the ward's other languages (Japanese is the default).",
    }
    channels = _codes(list(channel_registry.names()), minItems=1, description="Default: all four.")
    readings = {
        "type": "object",
        "maxProperties": 50,
        "propertyNames": {
            "minLength": 1,
            "maxLength": 20,
            "pattern": rf"^[^<&]*{KANJI.pattern}[^<&]*$",
        },
        "additionalProperties": {"type": "string", "pattern": KANA.pattern},
        "description": "Furigana for printed headings: a word with kanji → its reading in kana.",
    }
    notice_fields = {
        "title": TITLE,
        "body": BODY,
        "areas": areas,
        "channels": channels,
        "url": URL,
        "translations": translations,
        "readings": readings,
    }
    new_announcement = _object(
        {
            **notice_fields,
            "topics": _codes(ward.topic_codes, minItems=1),
            "publish_at": {
                **_WHEN,
                "description": "RFC 3339 with an offset, in the future, at most a year ahead;"
                " without it the notice goes at once.",
            },
        },
        optional=("areas", "channels", "url", "translations", "readings", "publish_at"),
    )
    new_announcement["description"] = TRIMMED
    severity = {"type": "string", "enum": ["advisory", "warning", "emergency"]}
    channel = {"enum": list(channel_registry.subscribed())}
    new_alert = _object(
        {
            **notice_fields,
            "severity": {
                **severity,
                "description": "Left out: the level's (5 and 4 emergency, 3 warning, 2 and 1"
                " advisory).",
            },
            "level": {
                "type": "integer",
                "minimum": 1,
                "maximum": 5,
                "description": "警戒レベル: 5 緊急安全確保, 4 避難指示, 3 高齢者等避難 (the ward's"
                " evacuation information); 2 and 1 the JMA's, sent as information. Every"
                " channel opens with it: 【警戒レベル4】避難指示.",
            },
            "hazard": {
                "enum": list(HAZARDS),
                "description": "What the alert is for: it lists the open shelters of its areas"
                " designated for that hazard.",
            },
            "supersedes": {
                "type": "string",
                "pattern": NOTICE_ID,
                "description": "The id of an active alert this one updates (更新).",
            },
        },
        optional=(
            "areas",
            "channels",
            "url",
            "translations",
            "readings",
            "supersedes",
            "severity",
            "level",
            "hazard",
        ),
    )
    new_alert["anyOf"] = [{"required": ["severity"]}, {"required": ["level"]}]
    new_alert["description"] = TRIMMED
    progress = _object(
        {
            "audience": {
                **_COUNT,
                "description": "LINE and email: the residents the audience held when the"
                " notice was planned (recipients: those cut into batches).",
            },
            "recipients": _COUNT,
            "sent": _COUNT,
            "failed": _COUNT,
            "pending": _COUNT,
            "paused": {**_STRING, "description": "Why the channel holds its batches for now."},
            "held_until": {**_WHEN, "description": "The end of the channel's quiet hours."},
        },
        optional=("audience", "paused", "held_until"),
    )
    return {
        "Error": _object(
            {
                "error": _object(
                    {
                        "code": {**_STRING, "description": "Stable, for programs."},
                        "message": {**_STRING, "description": "For people."},
                        "fields": {"type": "object", "additionalProperties": _STRING},
                    }
                )
            }
        ),
        "Translation": _object({"title": TITLE, "body": BODY}),
        "NewAnnouncement": new_announcement,
        "NewAlert": new_alert,
        "CapDocument": {
            "type": "string",
            "description": "A CAP 1.2 `<alert>` (urn:oasis:names:tc:emergency:cap:1.2).",
            "example": _example_cap(settings),
        },
        "AllClearWords": _object(
            {"title": TITLE, "body": BODY, "url": URL, "translations": translations},
            optional=("title", "body", "url", "translations"),
        ),
        "Accepted": _object({"id": _STRING, "status": {"enum": list(STATUSES)}}),
        "Cancelled": _object({"id": _STRING, "status": {"const": "cancelled"}}),
        "AllClear": _object(
            {"id": _STRING, "status": {"enum": list(STATUSES)}, "cancels": _STRING}
        ),
        "Progress": progress,
        "Notice": _notice(),
        "NoticeView": _view(),
        "AlertView": _view(alert=True),
        "Rejected": _object(
            {
                "id": _STRING,
                "entry": _NULLABLE,
                "at": {"type": "number"},
                "reason": _NULLABLE,
                "notice": {**_NULLABLE, "description": "As received."},
            }
        ),
        "NewSubscriber": _object(
            {
                "channel": channel,
                "address": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 300,
                    "pattern": r"^[^\u0000-\u001f\u007f]*$",
                    "description": "A LINE user id, an email address or a postal address.",
                },
                "name": {
                    "type": "string",
                    "maxLength": 100,
                    "pattern": r"^[^\u0000-\u001f\u007f]*$",
                    "description": "Required for print (the envelope).",
                },
                "areas": areas,
                "topics": _codes(ward.topic_codes, description="`[]` means every topic."),
                "language": {"enum": ward.language_codes, "default": "ja"},
            },
            optional=("name", "areas", "topics", "language"),
        ),
        "SubscriberSaved": _object({"id": _STRING, "channel": channel, "created": _BOOL}),
        "Subscriber": _object(
            {
                "id": _STRING,
                "channel": channel,
                "address": {**_STRING, "description": "Masked."},
                "areas": {"type": "array", "items": _STRING},
                "topics": {"type": "array", "items": _STRING},
                "language": _STRING,
            }
        ),
        "SubscriberDeleted": _object({"id": _STRING, "deleted": {"const": True}}),
        "Draft": _object(
            {
                "id": {"type": "string", "pattern": "^jma-"},
                "alert": {
                    "type": "object",
                    "description": "The alert it becomes: title, body, areas, level, hazard,"
                    " severity, type (alert, update, cancel), drill.",
                },
                "source": {
                    "type": "object",
                    "description": "The telegram: title, headline, url, event_id, serial,"
                    " status, info_type, kind, report_time.",
                },
                "signature": {"type": "array", "items": _STRING},
                "event": _STRING,
                "follows": _NULLABLE,
                "state": {"enum": ["pending", "approved", "dismissed"]},
                "alert_id": _NULLABLE,
                "created": _STRING,
            }
        ),
        "Shelter": _object(
            {
                "id": _STRING,
                "name": _STRING,
                "address": _STRING,
                "lat": {"type": "number"},
                "lon": {"type": "number"},
                "area": {"enum": ward.area_codes},
                "hazards": {"type": "array", "items": {"enum": list(HAZARDS)}},
                "also_shelter": {
                    "type": "boolean",
                    "description": "A 指定緊急避難場所 that is also a 指定避難所.",
                },
                "open": {"type": "boolean"},
                "opened_at": {**_NULLABLE, "description": "When it was opened (RFC 3339)."},
                "map_url": {**_STRING, "description": "The shelter on the GSI's map."},
            }
        ),
        "Dismissed": _object({"id": _STRING, "state": {"const": "dismissed"}}),
        "AuditEntry": {
            **_object(
                {
                    "id": _STRING,
                    "at": {"type": "number"},
                    **dict.fromkeys(
                        ("who", "role", "action", "target", "outcome", "from"), _STRING
                    ),
                }
            ),
            "additionalProperties": {**_STRING, "description": "Some entries carry a detail."},
        },
        "LineWebhook": {
            "type": "object",
            "properties": {
                "destination": _STRING,
                "events": {"type": "array", "items": _line_event()},
            },
            "required": ["destination", "events"],
            "description": "LINE's Messaging API webhook body (an empty `events` is LINE's"
            " connection check).",
        },
        "Ready": _object(
            {
                "status": {"const": "ok"},
                "redis": {"const": "up"},
                "paused": {"type": "object", "additionalProperties": _STRING},
            },
            optional=("paused",),
        ),
        "NotReady": _object({"status": {"const": "unavailable"}, "redis": {"const": "down"}}),
    }


def _notice() -> Schema:
    """A notice as the service keeps it: what was posted, with what the service assigned."""
    return {
        "type": "object",
        "properties": {
            "kind": {"enum": ["announcement", "alert"]},
            "id": _STRING,
            "title": _STRING,
            "body": _STRING,
            "areas": {"type": "array", "items": _STRING},
            "channels": {"type": "array", "items": _STRING},
            "url": _NULLABLE,
            "translations": {"type": "object"},
            "readings": {"type": "object"},
            "received_at": _NULLABLE,
            "topics": {"type": "array", "items": _STRING},
            "publish_at": _NULLABLE,
            "severity": _STRING,
            "supersedes": _NULLABLE,
            "type": {"enum": ["alert", "update", "cancel"]},
            "references": _NULLABLE,
            "drill": _BOOL,
        },
        "required": ["kind", "id", "title", "body", "areas", "channels"],
    }


def _line_event() -> Schema:
    """The events the conversation acts on, as LINE sends them; others are skipped."""
    common: dict[str, Schema] = {
        "mode": {"enum": ["active", "standby"]},
        "timestamp": {"type": "integer", "description": "Milliseconds since the epoch."},
        "source": _object(
            {
                "type": {"const": "user"},
                "userId": {"type": "string", "pattern": LINE_USER_ID.pattern},
            }
        ),
        "webhookEventId": {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"},
        "deliveryContext": _object({"isRedelivery": _BOOL}),
    }
    token: dict[str, Schema] = {"replyToken": _STRING}
    kinds: dict[str, dict[str, Schema]] = {
        "follow": {**token, "follow": _object({"isUnblocked": _BOOL})},
        "unfollow": {},
        "message": {
            **token,
            "message": _object(
                {
                    "type": {"const": "text"},
                    "id": _STRING,
                    "text": {"type": "string", "maxLength": 5000},
                    "quoteToken": _STRING,
                }
            ),
        },
        "postback": {
            **token,
            "postback": _object(
                {
                    "data": {
                        "type": "string",
                        "pattern": "^do=(area|topic|lang|menu|done)(&v=[a-z0-9_-]{0,32})?$",
                        "description": "What the quick replies send: `do=area&v=nerima`, …",
                    }
                }
            ),
        },
    }
    return {
        "oneOf": [
            {**_object({"type": {"const": kind}, **common, **more}), "additionalProperties": True}
            for kind, more in kinds.items()
        ]
    }


def _view(alert: bool = False) -> Schema:
    properties = {
        "id": _STRING,
        "kind": {"const": "alert"} if alert else {"enum": ["announcement", "alert"]},
        "status": {"enum": list(STATUSES)},
        "created": _WHEN,
        "updated": _WHEN,
        "notice": _schema("Notice"),
        "progress": {
            "type": "object",
            "propertyNames": {"enum": list(channel_registry.names())},
            "additionalProperties": _schema("Progress"),
        },
        "error": {**_STRING, "description": "Why it failed, when it did."},
        "state": {
            "enum": ["pending", "active", "superseded", "cancelled", "all-clear", "withdrawn"],
            "description": "Alerts only.",
        },
        "requested_by": _STRING,
        "approved_by": _STRING,
        "references": {**_STRING, "description": "The alert this one updates or calls off."},
        "superseded_by": _STRING,
    }
    optional = ("error", "approved_by", "references", "superseded_by")
    return _object(properties, optional if alert else (*optional, "state", "requested_by"))


def _example_announcement(settings: Settings) -> Schema:
    ward = settings.ward
    return {
        "title": "粗大ごみの収集日が変わります",
        "body": "12月から粗大ごみの収集日が変わります。",
        "topics": ward.topic_codes[:1],
        "areas": ward.area_codes[:1],
    }


def _example_alert(settings: Settings) -> Schema:
    return {
        "title": "避難指示",
        "body": "直ちに避難してください。",
        "severity": "emergency",
        "areas": settings.ward.area_codes[:1],
    }


def _example_cap(settings: Settings) -> str:
    ward = settings.ward
    area = (ward.cap or [ward.name])[0]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>EXAMPLE-0001</identifier>
  <sender>desk@example.jp</sender>
  <sent>2026-11-26T09:00:00+09:00</sent>
  <status>Exercise</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>ja-JP</language>
    <category>Met</category>
    <event>大雨特別警報</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <headline>大雨特別警報</headline>
    <description>命を守る行動をとってください。</description>
    <area><areaDesc>{area}</areaDesc></area>
  </info>
</alert>"""


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json", charset="utf-8")


def add_routes(app: web.Application) -> None:
    app[OPENAPI] = json.dumps(document(app[RUNTIME].settings), ensure_ascii=False).encode()
    app.router.add_get("/api/openapi.json", openapi_json)
