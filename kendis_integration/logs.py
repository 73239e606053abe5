"""Log formats: plain text (default) or one JSON object per line (LOG_FORMAT=json), for Django and gunicorn alike.

Imports nothing of Django: gunicorn's master process uses it before the app is loaded.
"""

from __future__ import annotations

import logging
import re

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

LOG_FORMATS = ("plain", "json")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# The OAuth callback's query carries the authorization code and the state: the whole query of that path, and
# any `code=` / `state=` value anywhere else (a Referer, a request line in an error message), never reach a log.
# Both callbacks: Jira Data Center's (one per account) and this deployment's one Jira Cloud callback.
CALLBACK_PATHS = ("/oauth/jira/callback/", "/oauth/atlassian/callback/")
_CALLBACK_QUERY = re.compile(r"(/oauth/(?:jira|atlassian)/callback/[^?\s\"]*)\?[^\s\"]*")
_OAUTH_PARAMETER = re.compile(r"((?:^|[?&])(?:code|state)=)[^&\s\"]*")  # in a URL, or a bare query string
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """`text` without the callback's query string and without any code/state parameter value."""
    return _OAUTH_PARAMETER.sub(r"\1" + REDACTED, _CALLBACK_QUERY.sub(r"\1?" + REDACTED, text))


class RedactCallbackQuery(logging.Filter):
    """For loggers outside Django's reach (gunicorn's error log): redact() every message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time, level, logger, process, message, and the record's extra fields.

    Django attaches the request object to its request log records (django.request, django.server): its repr is
    the full URL with the query string, so it is left out (the message names the path already).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s")
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger",
                                            "process": "pid"})
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "request", "server_time"])
        super().__init__(*args, **kwargs)


def formatter(log_format: str, fmt: str = PLAIN_FORMAT, datefmt: str | None = None) -> logging.Formatter:
    """The formatter for LOG_FORMAT: `fmt` for plain text, else the JSON formatter."""
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(fmt, datefmt)
