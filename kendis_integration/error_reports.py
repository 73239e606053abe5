"""What Django's error reports (the mails to ADMINS on a 500, the DEBUG error page) may show.

Django's own filter masks a setting only when its *name* says API, AUTH, TOKEN, KEY, SECRET, PASS or
SIGNATURE, and it shows the request's query string, GET parameters and URLs as they came. Here:

- a setting is masked when its value holds a credential, whatever its name: a URL with a user or password
  (DATABASE_URL, JIRA_PROXY_URL, an smtp:// EMAIL_URL), any value that contains another setting's secret
  (the database password parsed into DATABASES, the SMTP password, SECRET_KEY...), a URL whose query names a
  key, token, password or signature; and by name, besides Django's words, WEBHOOK (a Slack-style webhook's path
  is its secret), DSN, PROXY and CREDENTIAL;
- the OAuth callbacks' query (the authorization code and the state) is taken out of every request detail on
  both callback paths (RAW_URI, REQUEST_URI, QUERY_STRING, the Referer, the request URL, GET), and `code` /
  `state` values and parameters named like secrets are masked on every other path, in GET and POST alike;
- the exception's message and chained causes lose any known secret and any URL's password.

settings.DEFAULT_EXCEPTION_REPORTER and DEFAULT_EXCEPTION_REPORTER_FILTER name the two classes below.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.views import debug

from .logs import CALLBACK_PATHS, REDACTED, redact

# Django's words, the names of settings that hold a credential in their value, and the CSRF secret Django puts
# into request.META (CSRF_COOKIE).
HIDDEN_NAMES = re.compile(r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|WEBHOOK|DSN|PROXY|CREDENTIAL"
                          r"|^CSRF_COOKIE$", re.I)
# Settings whose value *is* a secret: collected, so that a copy of it anywhere else is masked too.
SECRET_NAMES = re.compile(r"SECRET(_KEY)?(_FALLBACKS)?$|PASSWORD$|PASSWD$|TOKEN$|(^|_)KEYS?$|SIGNATURE$|WEBHOOK_URL$"
                          r"|DSN$", re.I)
# A URL carrying user info: scheme://user:password@host or scheme://token@host.
_USER_INFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s?#@]*@")
_PASSWORD_IN_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s?#@:]*):[^/\s?#@]*@")
# A query parameter named like a secret (?token=..., &sslpassword=..., &sig=...).
_SECRET_PARAMETER = re.compile(r"[?&][^=&\s]*(?:key|token|secret|pass|pwd|sig|auth|code|state)[^=&\s]*=", re.I)
_OAUTH_PARAMETERS = frozenset({"code", "state"})
_QUERY = re.compile(r"\?[^\s\"'<>]*")
SHORTEST_SECRET = 4  # a shorter "secret" would mask half the report and protect nothing


def _strings(value):
    """Every string inside a setting's value (dicts, lists, tuples), keys excepted."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _strings(item)


def _secrets_of(name, value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _secrets_of(f"{name}.{key}" if isinstance(key, str) else name, item)
        return
    if isinstance(name, str) and SECRET_NAMES.search(name.rsplit(".", 1)[-1]):
        yield from _strings(value)
        return
    for text in _strings(value):
        for match in re.finditer(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"']+", text):
            try:
                password = urlsplit(match.group(0)).password
            except ValueError:
                password = None
            if password:
                yield password


@functools.lru_cache(maxsize=1)
def known_secrets() -> tuple[str, ...]:
    """The secret values of this deployment's settings (longest first), read once."""
    found = set()
    for name in dir(settings):
        if name.isupper():
            found.update(s for s in _secrets_of(name, getattr(settings, name, None)) if len(s) >= SHORTEST_SECRET)
    return tuple(sorted(found, key=len, reverse=True))


@receiver(setting_changed)
def _settings_changed(**kwargs):
    known_secrets.cache_clear()


def holds_secret(text: str) -> bool:
    """Whether `text` (a setting's value, a header) holds a credential."""
    return bool(_USER_INFO.search(text) or _SECRET_PARAMETER.search(text)
                or any(secret in text for secret in known_secrets()))


def cleanse_text(text: str) -> str:
    """Free text (an exception's message) without the known secrets and URL passwords, the rest kept."""
    for secret in known_secrets():
        text = text.replace(secret, ExceptionReporterFilter.cleansed_substitute)
    return redact(_PASSWORD_IN_URL.sub(r"\1:" + ExceptionReporterFilter.cleansed_substitute + "@", text))


def is_callback(request) -> bool:
    path = getattr(request, "path", "") or ""  # with SCRIPT_NAME in front when the app is mounted below a prefix
    return any(prefix in path for prefix in CALLBACK_PATHS)


class ExceptionReporterFilter(debug.SafeExceptionReporterFilter):
    """Masks settings by name and by value, and the OAuth callbacks' code and state everywhere (module docstring)."""

    hidden_settings = HIDDEN_NAMES

    def cleanse_setting(self, key, value):
        if isinstance(value, str) and holds_secret(value):
            return self.cleansed_substitute
        return super().cleanse_setting(key, value)

    def get_safe_request_meta(self, request):
        meta = super().get_safe_request_meta(request)
        on_callback = is_callback(request)
        for key, value in meta.items():
            if not isinstance(value, str) or value == self.cleansed_substitute:
                continue
            if on_callback and key == "QUERY_STRING" and value:
                value = REDACTED
            elif on_callback:
                # RAW_URI, REQUEST_URI, the Referer and whatever a proxy adds (X-Original-URI...): no query at all.
                value = _QUERY.sub("?" + REDACTED, value)
            meta[key] = redact(value)
        return meta

    def get_safe_parameters(self, request, parameters):
        """GET or POST: every value on a callback path; code, state and secret-named parameters elsewhere."""
        cleansed = parameters.copy()
        on_callback = is_callback(request)
        for name in parameters:
            if (on_callback or name.lower() in _OAUTH_PARAMETERS or self.hidden_settings.search(name)
                    or any(holds_secret(value) for value in parameters.getlist(name) if isinstance(value, str))):
                cleansed.setlist(name, [self.cleansed_substitute])
        return cleansed

    def get_post_parameters(self, request):
        parameters = super().get_post_parameters(request)
        if request is None or not hasattr(parameters, "getlist"):
            return parameters
        return self.get_safe_parameters(request, parameters)

    def get_safe_uri(self, request, uri: str) -> str:
        if is_callback(request):
            uri = _QUERY.sub("?" + REDACTED, uri)
        return cleanse_text(uri)


class ExceptionReporter(debug.ExceptionReporter):
    """Django's report, with GET, the request URL and the exception's words passed through the filter too
    (Django shows them as they came)."""

    def get_traceback_data(self):
        data = super().get_traceback_data()
        report_filter = self.filter if isinstance(self.filter, ExceptionReporterFilter) else ExceptionReporterFilter()
        if self.request is not None:
            data["request_GET_items"] = report_filter.get_safe_parameters(self.request, self.request.GET).items()
            if "request_insecure_uri" in data:
                data["request_insecure_uri"] = report_filter.get_safe_uri(self.request, data["request_insecure_uri"])
        for key in ("exception_value", "exception_notes"):
            if isinstance(data.get(key), str):
                data[key] = cleanse_text(data[key])
        for frame in data.get("frames", []):
            if frame.get("exc_cause") is not None:
                frame["exc_cause"] = cleanse_text(str(frame["exc_cause"]))
        return data
