"""Reading the configuration strictly, and telling an operator what is wrong with it in one line.

kendis_integration/settings.py reads every variable through `StrictEnv`: a value
that cannot mean what the variable needs (DEBUG=yes-please, CONN_MAX_AGE=soon,
DATABASE_URL=not-a-url, ALLOWED_HOSTS=https://kendis.example.com) stops the
process with ImproperlyConfigured naming the variable, instead of being taken as
false, as a default or as a host name nobody will ever send.

`exit_on_configuration_error()` is where such an error meets the operator:
manage.py and deploy/gunicorn.conf.py load the settings inside it, so the error
is one line on stderr ("Configuration error: ...", exit code 78, EX_CONFIG) and
not a 50-line traceback. A value is never repeated in a message unless it cannot
be a secret: DATABASE_URL holds a password.
"""

from __future__ import annotations

import contextlib
import re
import sys
import warnings
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

# sysexits.h: "configuration error". systemd units list it in RestartPreventExitStatus: it will not mend itself.
EXIT_CONFIGURATION_ERROR = 78

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


class StrictEnv(environ.Env):
    """django-environ's Env, refusing values it would otherwise guess at."""

    def bool(self, var, default=environ.Env.NOTSET):
        raw = self.ENVIRON.get(var)
        if raw is not None and raw.strip().lower() not in TRUE_WORDS + FALSE_WORDS:
            shown = raw if len(raw) <= 40 else raw[:40] + "…"
            raise ImproperlyConfigured(f"{var} must be true or false, not {shown!r}.")
        return super().bool(var, default=default)

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except ValueError:
            # int("soon"), float("fast"): the message names the variable; the value is not repeated.
            kind = {int: "a whole number", float: "a number"}.get(cast, "a valid value")
            raise ImproperlyConfigured(f"{var} must be {kind}.") from None


def database_config(env: environ.Env, url: str) -> dict:
    """DATABASES["default"] from DATABASE_URL, or one line saying what a database URL looks like."""
    try:
        with warnings.catch_warnings():  # django-environ's own "Engine not recognized" would repeat the URL
            warnings.simplefilter("ignore")
            config = env.db_url_config(url)
    except (ValueError, KeyError, ImproperlyConfigured):  # a bad port, an unknown scheme
        config = {}
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not config.get("ENGINE") or scheme not in env.DB_SCHEMES:
        if scheme in env.DB_SCHEMES:
            why = " (its host or port cannot be read)"
        elif scheme.isascii() and scheme.isidentifier() and len(scheme) < 20:
            why = f" (unknown scheme {scheme!r})"
        else:
            why = ""
        raise ImproperlyConfigured(
            "DATABASE_URL is not a database URL" + why
            + ": use postgres://user:password@host:5432/kendis (or sqlite:////absolute/path/db.sqlite3 in "
              "development)."
        )
    return config


def email_config(env: environ.Env, var: str, *, default: str) -> dict:
    """EMAIL_URL as django-environ reads it, or one line: a port it cannot read is a ValueError there (the
    URL, with its password, is not repeated)."""
    try:
        return env.email_url(var, default=default)
    except ValueError:
        raise ImproperlyConfigured(
            f"{var} is not a mail URL (its host or port cannot be read): use smtp://user:password@host:587/?tls=True "
            "(or consolemail:// in development).") from None


_HOST = re.compile(r"\*|\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\]|[0-9.]+")


def allowed_hosts(hosts: list[str]) -> list[str]:
    """ALLOWED_HOSTS holds host names as browsers send them in Host, without scheme, port or path."""
    for host in hosts:
        if "://" in host or "/" in host:
            bare = urlsplit(host if "://" in host else "//" + host).hostname or host
            raise ImproperlyConfigured(
                f"ALLOWED_HOSTS holds host names, not URLs: write {bare}, not {host} "
                "(the scheme goes in PUBLIC_BASE_URL).")
        if not _HOST.fullmatch(host):
            raise ImproperlyConfigured(
                f"ALLOWED_HOSTS must be comma-separated host names without port, e.g. kendis.example.com,"
                f".example.com; {host!r} is not one.")
    return hosts


@contextlib.contextmanager
def exit_on_configuration_error(stream=None):
    """A configuration error raised inside becomes one line on stderr and exit code 78."""
    try:
        yield
    except ImproperlyConfigured as exc:
        print(f"Configuration error: {exc}", file=stream or sys.stderr)
        raise SystemExit(EXIT_CONFIGURATION_ERROR) from None


def load_settings():
    """Import the settings named by DJANGO_SETTINGS_MODULE, as Django would, inside the one-line handler."""
    with exit_on_configuration_error():
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018 - touching a setting imports the module
