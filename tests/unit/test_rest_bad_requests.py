"""aiohttp's log record for a malformed request becomes one WARNING line, no traceback."""

from __future__ import annotations

import logging

import pytest
from aiohttp.http_exceptions import BadHttpMessage

from servingd.apis.log_budget import LogBudget
from servingd.apis.rest.bad_requests import BadRequestFilter, install_bad_request_filter


def test_bad_http_message_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    install_bad_request_filter()
    install_bad_request_filter()  # idempotent
    logger = logging.getLogger("aiohttp.server")
    assert len(logger.filters) == 1
    try:
        raise BadHttpMessage("Invalid header value char:\n\n    b'X: \\x00'")
    except BadHttpMessage as exc:
        logger.exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == (
        "Error handling request from 127.0.0.1: 400 Invalid header value char: b'X: \\x00'"
    )


def test_other_errors_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    install_bad_request_filter()
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_a_flood_of_bad_requests_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    install_bad_request_filter()
    logger = logging.getLogger("aiohttp.server")
    (bad_requests,) = logger.filters
    assert isinstance(bad_requests, BadRequestFilter)
    clock = [0.0]
    bad_requests.budget = LogBudget(interval_s=60, burst=5, clock=lambda: clock[0])
    for _ in range(1000):
        try:
            raise BadHttpMessage("Invalid method")
        except BadHttpMessage as exc:
            logger.exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
    assert len(caplog.records) == 5
    clock[0] = 60.0
    try:
        raise BadHttpMessage("Invalid method")
    except BadHttpMessage as exc:
        logger.exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
    assert "995 similar lines left out" in caplog.records[-1].getMessage()
