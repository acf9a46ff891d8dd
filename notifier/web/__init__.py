"""The HTTP side: the API, the LINE webhook, the resident's pages and the console.

``app`` assembles them; the route modules share ``http`` (the runtime's key, JSON answers
and errors, reading bodies), ``guard`` (tokens, roles, the audit log, rate counts) and,
for the console, ``pages``; ``middleware`` wraps every request."""

from notifier.web.app import make_app

__all__ = ["make_app"]
