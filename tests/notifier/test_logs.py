"""Logs: one JSON event a line, whatever the fields are called."""

from __future__ import annotations

import json
import logging

import pytest

from notifier.logs import JsonFormatter, event


def test_a_field_named_like_a_log_record_attribute_is_kept_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("notifier.test")
    with caplog.at_level(logging.INFO, logger="notifier.test"):
        event(logger, "subscriber.saved", subscriber="s1", created=True, module="x")
    (record,) = caplog.records
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "subscriber.saved"
    assert (line["subscriber"], line["created_"], line["module_"]) == ("s1", True, "x")
