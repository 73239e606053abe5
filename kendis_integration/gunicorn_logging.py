"""gunicorn's logger for this app (deploy/gunicorn.conf.py sets it as logger_class).

- The OAuth callback's query string (the authorization code and the state)
  never reaches the access log or the error log, whatever access_log_format
  says: every access-log field is redacted (the request line `%(r)s`, the
  query `%(q)s`, the Referer, environ and header fields), and so is every
  error-log message (gunicorn's "Error handling request <uri>" names the
  full URI).
- LOG_FORMAT=json: one JSON object per line, as the app's own logs; an
  access line also carries its fields (method, path without query, status,
  bytes, duration, client address, user agent).
"""

from __future__ import annotations

import os
import traceback

from gunicorn import glogging

from .logs import CALLBACK_PATHS, REDACTED, RedactCallbackQuery, formatter, redact

_REDACT = RedactCallbackQuery()


class Logger(glogging.Logger):
    def setup(self, cfg):
        super().setup(cfg)
        self.error_log.addFilter(_REDACT)  # addFilter ignores a filter already there (configuration reload)
        self.access_log.addFilter(_REDACT)

    def _set_handler(self, log, output, fmt, stream=None):
        if os.environ.get("LOG_FORMAT", "plain").strip().lower() == "json":
            fmt = formatter("json")
        super()._set_handler(log, output, fmt, stream=stream)

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        requested = (environ.get("PATH_INFO") or "") + (environ.get("RAW_URI") or "")
        callback = any(path in requested for path in CALLBACK_PATHS)
        for key, value in atoms.items():
            if not isinstance(value, str):
                continue
            if callback and key in ("q", "{query_string}e") and value:
                atoms[key] = REDACTED  # the callback's whole query, whatever parameters Jira adds
            else:
                atoms[key] = redact(value)
        return atoms

    def access(self, resp, req, environ, request_time):
        # gunicorn's own access(), plus the request's fields as the record's extras (for LOG_FORMAT=json).
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        status = atoms["s"]
        fields = {"method": atoms["m"], "path": atoms["U"], "status": int(status) if str(status).isdigit() else status,
                  "bytes": atoms["B"], "duration_ms": atoms["M"], "remote_addr": atoms["h"], "user_agent": atoms["a"]}
        try:
            self.access_log.info(self.cfg.access_log_format, self.atoms_wrapper_class(atoms), extra=fields)
        except Exception:  # noqa: BLE001 - as gunicorn's: a log line must never fail a request
            self.error(traceback.format_exc())
