"""Logging filters, referenced from settings.LOGGING."""

import logging
import re

# The development server logs every request line with its query string. The
# callback's query carries the authorization code and the state.
_OAUTH_PARAMETER = re.compile(r"([?&](?:code|state)=)[^&\s\"]*")


class RedactOAuthParameters(logging.Filter):
    """Replace the values of `code` and `state` query parameters in a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _OAUTH_PARAMETER.sub(r"\1[redacted]", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
