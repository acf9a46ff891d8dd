"""What the CSV imports (subscribers, shelters) share: a file with a bad row imports
nothing, and the refusal names every bad line."""

from __future__ import annotations


class ImportRefused(ValueError):
    """A CSV file (of subscribers, of shelters) with bad rows; ``errors`` has one line per
    problem, and nothing was imported."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} problem(s); nothing was imported")
        self.errors = errors
