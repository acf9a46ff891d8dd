"""The HTTP side: the API, health and metrics (and later webhooks and the console)."""

from notifier.web.app import make_app

__all__ = ["make_app"]
