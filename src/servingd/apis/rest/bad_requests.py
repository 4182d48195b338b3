"""Malformed HTTP from clients is logged as one line, not an ERROR with a traceback.

aiohttp answers a request it cannot parse (a NUL in a header, a broken request line, ...)
with 400 and logs it on `aiohttp.server` at ERROR with the parser's traceback. That is the
client's fault, and a hostile client could fill the journal with tracebacks: this filter
turns those records into one WARNING line naming the problem, at most LogBudget's burst of
them per interval (then a count of those left out). Other records pass as they are.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

from servingd.apis.log_budget import LogBudget

_LOGGER = "aiohttp.server"


class BadRequestFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.budget = LogBudget()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            log_it, left_out = self.budget.take()
            if not log_it:
                return False
            detail = " ".join(str(exc.message).split())[:200]
            record.args = (record.getMessage(), exc.code, detail, self.budget.summary(left_out))
            record.msg = "%s: %s %s%s"
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.WARNING
            record.levelname = logging.getLevelName(logging.WARNING)
        return True


def install_bad_request_filter() -> None:
    """Idempotent: adds the filter to aiohttp's server logger once."""
    logger = logging.getLogger(_LOGGER)
    if not any(isinstance(f, BadRequestFilter) for f in logger.filters):
        logger.addFilter(BadRequestFilter())
