"""Validate what we would send to LINE against LINE's own OpenAPI documents.

The documents (tests/specs/line/, unchanged from LINE) describe message types with
OpenAPI discriminators, which JSON Schema validators ignore; the ``discriminator``
keyword below follows the mapping, so a text message is checked as a TextMessage,
a flex message as a FlexMessage, and so on down the tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import ValidationError, validators
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPECS = Path(__file__).parent / "specs" / "line"
_URI = "urn:line:messaging-api"


@cache
def _spec(name: str) -> dict[str, Any]:
    with (SPECS / name).open(encoding="utf-8") as fh:
        loaded: dict[str, Any] = yaml.safe_load(fh)
    return loaded


def _discriminator(
    validator: Any, discriminator: dict[str, Any], instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        return
    prop = discriminator["propertyName"]
    value = instance.get(prop)
    mapping = discriminator.get("mapping", {})
    target = mapping.get(value)
    if target is None:
        yield ValidationError(f"{prop} {value!r} is not one of {sorted(mapping)}")
        return
    # the subtype's allOf names this base schema again: don't follow the same branch twice
    seen = _following.get()
    mark = (id(instance), target)
    if mark in seen:
        return
    seen.add(mark)
    try:
        yield from validator.descend(instance, {"$ref": target})
    finally:
        seen.discard(mark)


_following: ContextVar[set[tuple[int, str]]] = ContextVar("following")
_Validator = validators.extend(OAS30Validator, {"discriminator": _discriminator})


def validator(spec: str, schema: str) -> Any:
    document = _spec(spec)
    resource = Resource.from_contents(document, default_specification=DRAFT4)
    registry: Registry = Registry().with_resource(_URI, resource)
    target = {"$ref": f"{_URI}#/components/schemas/{schema}"}
    return _Validator(target, registry=registry)


def errors(body: Any, schema: str, spec: str = "messaging-api.yml") -> list[str]:
    """Every way ``body`` breaks ``schema``; empty when LINE would take it."""
    reset = _following.set(set())
    try:
        found = list(validator(spec, schema).iter_errors(body))
    finally:
        _following.reset(reset)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in found]
