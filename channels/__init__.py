"""Delivery channels: the classes that send, found by their names in the registry
(notifier/channel_registry.py)."""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import Any

from channels.base import BaseChannel, Context
from notifier import channel_registry

Channel = BaseChannel[Any]  # any channel, as the worker and the service hold it


@cache
def channel_class(name: str) -> type[Channel]:
    """The class of the named channel, imported the first time it is asked for."""
    module, _, attribute = channel_registry.spec(name).implementation.partition(":")
    cls = getattr(import_module(module), attribute)
    if not (isinstance(cls, type) and issubclass(cls, BaseChannel)) or cls.spec.name != name:
        raise TypeError(f"{module}:{attribute} is not the BaseChannel of {name!r}")
    return cls


def create(name: str, context: Context) -> Channel:
    """The named channel. Every channel writes to its outbox in this version (see `check`)."""
    return channel_class(name)(context)


def classes() -> dict[str, type[Channel]]:
    """Every channel's class, by name, in the registry's order."""
    return {name: channel_class(name) for name in channel_registry.names()}


__all__ = ["BaseChannel", "Channel", "Context", "channel_class", "classes", "create"]
