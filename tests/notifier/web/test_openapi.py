"""GET /api/openapi.json: valid OpenAPI 3.1, one operation for each route of the API and
no more, the ward's codes as enums, and the service's real answers in its shapes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from notifier import alerts
from notifier.config import Settings
from notifier.models import Alert, Announcement, Subscriber
from notifier.runtime import Runtime
from notifier.web import make_app
from tests.conftest import Api, announcement, wait_for

DOCUMENTED = re.compile(r"^/(api/|line/|alerts\.atom$|alerts/|healthz$|readyz$|metrics$)")
PAGES = re.compile(r"^/(console|subscribe|unsubscribe|shelters)(/|$)")  # HTML for people, left out


@pytest.fixture
async def doc(api: Api) -> dict[str, Any]:
    status, body = await api.call("GET", "/api/openapi.json")  # no token
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method != "parameters"
    }


async def test_every_route_is_an_operation_and_every_operation_a_route(
    runtime: Runtime, doc: dict[str, Any]
) -> None:
    routes = {
        (route.method, route.resource.canonical)
        for route in make_app(runtime).router.routes()
        if route.resource is not None and route.method != "HEAD"  # aiohttp's, with each GET
    }
    api = {r for r in routes if DOCUMENTED.match(r[1])}
    assert all(PAGES.match(path) for _, path in routes - api), routes - api
    assert operations(doc) == api
    assert "/console" in doc["info"]["description"]
    assert "/subscribe" in doc["info"]["description"]


async def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")
    validate(doc, cls=OpenAPIV31SpecValidator)
    ids = [op["operationId"] for item in doc["paths"].values() for op in _ops(item)]
    assert len(ids) == len(set(ids))


async def test_the_wards_codes_are_enums(doc: dict[str, Any], settings: Settings) -> None:
    schemas = doc["components"]["schemas"]
    fields = schemas["NewAnnouncement"]["properties"]
    ward = settings.ward
    assert fields["areas"]["items"]["enum"] == ward.area_codes
    assert fields["topics"]["items"]["enum"] == ward.topic_codes
    assert set(fields["translations"]["properties"]) == set(ward.language_codes) - {"ja"}
    assert schemas["NewSubscriber"]["properties"]["language"]["enum"] == ward.language_codes
    assert (fields["title"]["maxLength"], fields["body"]["maxLength"]) == (100, 5000)
    assert fields["url"]["maxLength"] == 1000


@pytest.mark.parametrize("schema", ["NewAnnouncement", "NewAlert", "NewSubscriber"])
async def test_areas_may_be_left_out_and_default_to_the_whole_ward(
    doc: dict[str, Any], schema: str
) -> None:
    documented = doc["components"]["schemas"][schema]
    areas = documented["properties"]["areas"]
    assert "areas" not in documented["required"]
    assert areas["default"] == [] and "whole ward" in areas["description"]


async def test_each_operation_says_its_security_and_answers(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        for op in _ops(item):
            answers = set(op["responses"])
            secured = op["security"] != []
            assert secured == ("x-role" in op), path
            if secured:
                assert f"Role: `{op['x-role']}`" in op["description"]
                assert {"401", "429", "503"} <= answers, path
            elif path.startswith("/api/"):
                assert {"429", "503"} <= answers, path
            if "requestBody" in op:
                assert {"400", "413"} <= answers, path


@pytest.mark.parametrize(
    ("schema", "model", "assigned"),
    [
        ("NewAnnouncement", Announcement, {"id", "received_at", "kind"}),
        ("NewAlert", Alert, set(alerts.ASSIGNED)),
        ("NewSubscriber", Subscriber, set()),
    ],
)
async def test_request_bodies_have_the_models_fields(
    doc: dict[str, Any], schema: str, model: Any, assigned: set[str]
) -> None:
    documented = doc["components"]["schemas"][schema]
    assert set(documented["properties"]) == set(model.model_fields) - assigned
    required = {name for name, f in model.model_fields.items() if f.is_required()}
    if model is Alert:  # a severity, or a level that stands for one
        assert documented["anyOf"] == [{"required": ["severity"]}, {"required": ["level"]}]
        required -= {"severity"}
    assert set(documented["required"]) == required


class Checker:
    """Checks an answer against what the document says that operation answers."""

    def __init__(self, api: Api, doc: dict[str, Any]) -> None:
        self.api, self.doc = api, doc
        self.seen: set[tuple[str, str, int]] = set()

    async def __call__(
        self, method: str, path: str, template: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        status, body = await self.api.call(method, path, **kwargs)
        template = template or path.split("?")[0]
        op = self.doc["paths"][template][method.lower()]
        assert str(status) in op["responses"], (method, path, status, body)
        answer = self._resolve(op["responses"][str(status)])
        ((media, content),) = answer["content"].items()
        if media == "application/json":
            schema = {**content["schema"], "components": self.doc["components"]}
            errors = [e.message for e in OAS31Validator(schema).iter_errors(body)]
            assert not errors, (method, path, status, body, errors)
        else:
            assert isinstance(body, str)
        self.seen.add((method, template, status))
        return status, body

    def _resolve(self, item: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in item:
            _, _, kind, name = item["$ref"].split("/")
            resolved: dict[str, Any] = self.doc["components"][kind][name]
            return resolved
        return item


async def test_the_services_answers_have_the_documented_shapes(
    api: Api, doc: dict[str, Any], tokens: dict[str, str], runtime: Runtime
) -> None:
    call = Checker(api, doc)
    staff, desk, admin = tokens["staff"], tokens["emergency"], tokens["admin"]
    _, accepted = await call("POST", "/api/announcements", token=staff, json=announcement())
    notice = f"/api/announcements/{accepted['id']}"

    async def delivered() -> bool:
        _, view = await call("GET", notice, "/api/announcements/{id}", token=staff)
        return view["status"] == "done"

    await wait_for(delivered, timeout=20)
    await call("GET", "/api/announcements?status=done&limit=5", token=staff)
    await call("DELETE", notice, "/api/announcements/{id}", token=staff)  # 409: done
    await call("GET", "/api/intake/rejected", token=staff)
    alert = {"title": "避難指示", "body": "避難してください。", "severity": "emergency"}
    _, issued = await call("POST", "/api/alerts", token=desk, json={**alert, "areas": []})
    await call("GET", "/api/alerts", token=staff)
    await call("GET", f"/api/alerts/{issued['id']}", "/api/alerts/{id}", token=staff)
    await call(
        "POST", f"/api/alerts/{issued['id']}/approve", "/api/alerts/{id}/approve", token=desk
    )
    _, clear = await call(
        "POST", f"/api/alerts/{issued['id']}/cancel", "/api/alerts/{id}/cancel", token=desk
    )
    await call("GET", f"/api/alerts/{clear['id']}", "/api/alerts/{id}", token=staff)
    postal = {"channel": "print", "address": "東京都練馬区豊玉北6-12-1", "name": "練馬花子"}
    _, saved = await call("POST", "/api/subscribers", token=staff, json=postal)
    await call("POST", "/api/subscribers", token=staff, json=postal)  # 200: updated
    subscriber = f"/api/subscribers/{saved['id']}"
    await call("GET", subscriber, "/api/subscribers/{id}", token=admin)
    await call("DELETE", subscriber, "/api/subscribers/{id}", token=admin)
    await call("GET", subscriber, "/api/subscribers/{id}", token=admin)  # 404
    await call("GET", "/api/audit?count=5", token=admin)
    await call("GET", "/api/audit", token=staff)  # 403
    await call("GET", "/api/alerts")  # 401
    await call("POST", "/api/announcements", token=staff, json={})  # 400
    await call("POST", "/line/webhook", json={"destination": "U0", "events": []})  # 503
    for path in ("/healthz", "/readyz", "/metrics"):
        await call("GET", path)
    assert {
        ("GET", "/api/announcements/{id}", 200),
        ("DELETE", "/api/announcements/{id}", 409),
        ("POST", "/api/alerts/{id}/approve", 409),
        ("POST", "/api/alerts/{id}/cancel", 202),
        ("POST", "/api/subscribers", 201),
        ("POST", "/api/subscribers", 200),
        ("GET", "/api/subscribers/{id}", 404),
        ("GET", "/api/audit", 403),
        ("GET", "/api/alerts", 401),
        ("POST", "/api/announcements", 400),
        ("POST", "/line/webhook", 503),
    } <= call.seen


def _ops(item: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for method, op in item.items() if method != "parameters"]
