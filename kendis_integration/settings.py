"""Django settings for kendis-integration.

Every setting is read from the environment here and only here (django-environ).
A `.env` file in the project root is read when present; real environment
variables always win over it. Outside DEBUG a missing required variable stops
the process at start with a message naming it.
"""

import os
import re
import ssl
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

# The app's settings have their one default in alm_accounts/conf.py; this module reads them from the environment.
from alm_accounts.conf import DEFAULTS

# Strict reading of the values and their one-line errors live in their own module (issue 19).
from kendis_integration.config import StrictEnv, allowed_hosts, database_config, email_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = StrictEnv()  # DEBUG=yes-please or CONN_MAX_AGE=soon stop with the variable named
# ENV_FILE="" turns the .env file off (the test settings do, to stay hermetic).
ENV_FILE = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    env.read_env(ENV_FILE, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)


def env_list(name, default=None):
    """A comma-separated variable; spaces around the commas are forgiven."""
    return [part.strip() for part in env.list(name, default=default or []) if part.strip()]


def required(name, cast=str, debug_default=None):
    """A variable that production must set; DEBUG may fall back to a default."""
    if name in env.ENVIRON and env.ENVIRON[name].strip():
        return cast(name)
    if DEBUG and debug_default is not None:
        return debug_default
    raise ImproperlyConfigured(
        f"The environment variable {name} is required"
        + ("" if DEBUG else " when DEBUG is off")
        + ". Set it in the environment or in .env (`make run` writes a development .env; production: "
        ".env.production.example, docs/configuration.md)."
    )


def pauses(name, default):
    """Comma-separated seconds, each in [0, 3600)."""
    try:
        values = [float(part) for part in env_list(name, default=[str(pause) for pause in default])]
    except ValueError:
        values = None
    if values is None or any(not 0 <= value < 3600 for value in values):  # the comparison also refuses nan
        raise ImproperlyConfigured(f"{name} must be comma-separated pauses in seconds, e.g. 0.5,2")
    return values


def ca_bundle(name):
    """The absolute path of a PEM file holding at least one certificate, or ""."""
    value = env.str(name, default=DEFAULTS[name]).strip()
    if not value:
        return ""
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.isfile(path):
        raise ImproperlyConfigured(f"{name} must be the path of a PEM file of CA certificates; {path} is not a file.")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except (OSError, ValueError):  # ssl.SSLError is an OSError: no certificate, garbage, unreadable
        context = None
    if context is None or not context.cert_store_stats()["x509"]:
        raise ImproperlyConfigured(
            f"{name} must be the path of a PEM file of CA certificates; {path} holds no readable certificate "
            "(-----BEGIN CERTIFICATE-----)."
        )
    return path


def proxy_url(name):
    """An http:// or https:// proxy address, or "". The value is never repeated: it may hold a password."""
    value = env.str(name, default=DEFAULTS[name]).strip()
    if not value:
        return ""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if (parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname
            or parts.path not in ("", "/") or parts.query or parts.fragment):
        raise ImproperlyConfigured(f"{name} must be the proxy's address, e.g. http://proxy.example.com:3128")
    return value


def atlassian_url(name, default):
    """An https:// origin of Atlassian's (http:// allowed in development), without a trailing slash."""
    value = env.str(name, default=default).strip().rstrip("/")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("https", "http") or not parts.hostname or parts.query
            or parts.fragment or parts.username or parts.password):
        raise ImproperlyConfigured(f"{name} must be an https:// address, e.g. {default}")
    if parts.scheme == "http" and not DEBUG:
        raise ImproperlyConfigured(f"{name} must use https:// when DEBUG is off: tokens travel on it.")
    return value


def host_list(name):
    """Comma-separated host names or IP addresses; a leading dot is allowed (.example.com)."""
    hosts = env_list(name, default=list(DEFAULTS[name]))
    for host in hosts:
        if not re.fullmatch(r"\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?|[0-9A-Fa-f:]+", host):
            raise ImproperlyConfigured(f"{name} must be comma-separated host names, e.g. jira.example.com,.corp")
    return hosts


SECRET_KEY = required("SECRET_KEY", env.str, debug_default="django-insecure-dev-only-key-not-for-production")
ALLOWED_HOSTS = allowed_hosts(required("ALLOWED_HOSTS", env_list, debug_default=["127.0.0.1", "localhost", "[::1]"]))

# The origin Jira redirects back to. Every callback URL is built from it, so
# changing it changes the Redirect URL registered on every Jira link.
PUBLIC_BASE_URL = required("PUBLIC_BASE_URL", env.str, debug_default="http://127.0.0.1:8000").rstrip("/")
if not PUBLIC_BASE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured("PUBLIC_BASE_URL must start with https:// (or http:// in development).")
if not DEBUG and not PUBLIC_BASE_URL.startswith("https://"):
    raise ImproperlyConfigured("PUBLIC_BASE_URL must use https:// when DEBUG is off: Jira refuses http redirect URLs.")

CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[PUBLIC_BASE_URL])

# A list: the first key encrypts, every key decrypts (key rotation, see README).
# Required even in DEBUG: a made-up key would make stored secrets unreadable later.
FIELD_ENCRYPTION_KEY = required("FIELD_ENCRYPTION_KEY", env_list)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "encrypted_model_fields",  # its crypter (see alm_accounts/fields.py) and `generate_encryption_key`
    "alm_accounts",
]

MIDDLEWARE = [
    # First: answers /healthz and /readyz before the HTTPS redirect and the ALLOWED_HOSTS check (a load
    # balancer probes the pod's IP over plain HTTP). /metrics is an ordinary view behind both.
    "alm_accounts.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (/static/: the admin's CSS and scripts) from STATIC_ROOT, before sessions and the rest.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "kendis_integration.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "kendis_integration.wsgi.application"

# Production names its database explicitly; development defaults to a SQLite file in the project.
DATABASE_URL = required("DATABASE_URL", env.str, debug_default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": database_config(env, DATABASE_URL)}  # not-a-url: one line, not KeyError
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite has no row locks. BEGIN IMMEDIATE takes the database write lock at
    # the start of every transaction, so token refreshes (which hold their
    # transaction across the call to Jira) are serialised across processes.
    # WAL lets readers (the admin) go on while a refresh holds the write lock.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 60, "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    # A kept connection the server or a firewall cut meanwhile is noticed (and replaced) at the next request,
    # instead of failing it.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A database that does not answer fails a request (or a refresher pass) after this many seconds instead of
    # hanging it. TLS to PostgreSQL goes in DATABASE_URL: ...?sslmode=verify-full (or require); a value given
    # there (?connect_timeout=5) wins over DATABASE_CONNECT_TIMEOUT.
    DATABASE_CONNECT_TIMEOUT = env.int("DATABASE_CONNECT_TIMEOUT", default=10)
    if not 1 <= DATABASE_CONNECT_TIMEOUT <= 300:
        raise ImproperlyConfigured("DATABASE_CONNECT_TIMEOUT must be a number of seconds between 1 and 300.")
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", DATABASE_CONNECT_TIMEOUT)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# Dates and times as 2026-12-06 10:43:52 UTC on every screen (kendis_integration/formats/en/formats.py).
FORMAT_MODULE_PATH = ["kendis_integration.formats"]

STATIC_URL = "static/"
# `manage.py collectstatic --noinput` at each deploy fills it; whitenoise serves it (see MIDDLEWARE).
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
# Outside DEBUG: compressed copies (gzip) and content-hashed names, which browsers may cache for good. The manifest
# only exists after collectstatic; DEBUG serves the apps' files as they are.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage" if DEBUG
                    else "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Security: secure by default outside DEBUG, each knob adjustable. ---
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Behind a TLS-terminating reverse proxy: SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https
# (A space after the comma or a header written X-Forwarded-Proto would never match: an endless https redirect.)
_proxy_header = env_list("SECURE_PROXY_SSL_HEADER")
if _proxy_header:
    if len(_proxy_header) != 2 or not _proxy_header[0].startswith("HTTP_") or not _proxy_header[1]:
        raise ImproperlyConfigured("SECURE_PROXY_SSL_HEADER must be 'HEADER,value', e.g. HTTP_X_FORWARDED_PROTO,https")
    SECURE_PROXY_SSL_HEADER = tuple(_proxy_header)
USE_X_FORWARDED_HOST = env.bool("USE_X_FORWARDED_HOST", default=False)

# --- Jira client tuning ---
JIRA_CONNECT_TIMEOUT = env.float("JIRA_CONNECT_TIMEOUT", default=DEFAULTS["JIRA_CONNECT_TIMEOUT"])
JIRA_READ_TIMEOUT = env.float("JIRA_READ_TIMEOUT", default=DEFAULTS["JIRA_READ_TIMEOUT"])
for _name in ("JIRA_CONNECT_TIMEOUT", "JIRA_READ_TIMEOUT"):
    if not 0 < globals()[_name] <= 600:
        raise ImproperlyConfigured(f"{_name} must be a number of seconds above 0 and at most 600.")

# How calls leave for Jira (alm_accounts/egress.py). The Jira client ignores the environment's
# REQUESTS_CA_BUNDLE, HTTPS_PROXY and NO_PROXY: a variable meant for another tool must not decide whom we
# trust with credentials. These say it explicitly.
# A PEM bundle trusted for Jira calls *instead of* certifi's (e.g. the company's CAs); an account's own
# "Jira CA certificate (PEM)" is added to it for that account's calls.
JIRA_CA_BUNDLE = ca_bundle("JIRA_CA_BUNDLE")
# The egress proxy for every Jira call (HTTPS through CONNECT), except hosts listed in JIRA_NO_PROXY.
JIRA_PROXY_URL = proxy_url("JIRA_PROXY_URL")
JIRA_NO_PROXY = host_list("JIRA_NO_PROXY")

# Pauses (seconds) between attempts when a token refresh could not reach Jira.
JIRA_RETRY_BACKOFF = pauses("JIRA_RETRY_BACKOFF", default=DEFAULTS["JIRA_RETRY_BACKOFF"])
# One time budget per token refresh or code exchange: connecting, reading and retries together. The account's
# row lock is held meanwhile, so it bounds that hold; keep it well under the web server's and proxy's timeouts
# (gunicorn 30 s, nginx 60 s) so that "Refresh token now" always answers.
JIRA_REFRESH_DEADLINE = env.float("JIRA_REFRESH_DEADLINE", default=DEFAULTS["JIRA_REFRESH_DEADLINE"])
if not 1 <= JIRA_REFRESH_DEADLINE <= 300:
    raise ImproperlyConfigured("JIRA_REFRESH_DEADLINE must be a number of seconds between 1 and 300.")

# --- Jira Cloud: the deployment's own OAuth 2.0 (3LO) app, registered once in Atlassian's developer console ---
# Customers do not create apps on Cloud: one distributable app of this deployment serves every Cloud account whose
# own Client ID is left blank. Its callback URL is one fixed URL of this deployment (see the README, "Jira Cloud").
ATLASSIAN_CLIENT_ID = env.str("ATLASSIAN_CLIENT_ID", default=DEFAULTS["ATLASSIAN_CLIENT_ID"]).strip()
ATLASSIAN_CLIENT_SECRET = env.str("ATLASSIAN_CLIENT_SECRET", default=DEFAULTS["ATLASSIAN_CLIENT_SECRET"]).strip()
if bool(ATLASSIAN_CLIENT_ID) != bool(ATLASSIAN_CLIENT_SECRET):
    raise ImproperlyConfigured("Set both ATLASSIAN_CLIENT_ID and ATLASSIAN_CLIENT_SECRET (the developer console "
                               "shows them together under Settings), or neither.")
# Atlassian's authorization server and its API gateway are two hosts: each is configured on its own (development
# and tests point them at local stand-ins), and one is never derived from the other.
ATLASSIAN_AUTH_URL = atlassian_url("ATLASSIAN_AUTH_URL", DEFAULTS["ATLASSIAN_AUTH_URL"])
ATLASSIAN_API_URL = atlassian_url("ATLASSIAN_API_URL", DEFAULTS["ATLASSIAN_API_URL"])

# How long an authorization started with "Get Auth Token" may wait for Jira's redirect.
OAUTH_STATE_TTL_SECONDS = env.int("OAUTH_STATE_TTL_SECONDS", default=DEFAULTS["OAUTH_STATE_TTL_SECONDS"])
# How often the refresher runs (refresh_tokens --loop's default interval; match it in a cron schedule). The ALM
# Accounts list warns that tokens are not being refreshed when no run has finished for three intervals.
REFRESHER_INTERVAL_SECONDS = env.int("REFRESHER_INTERVAL_SECONDS", default=DEFAULTS["REFRESHER_INTERVAL_SECONDS"])
if not 30 <= REFRESHER_INTERVAL_SECONDS <= 3600:
    raise ImproperlyConfigured("REFRESHER_INTERVAL_SECONDS must be between 30 and 3600 (an hour).")
# How often the refresher verifies a service account's connection by asking for a token (hours).
SERVICE_ACCOUNT_CHECK_HOURS = env.int("SERVICE_ACCOUNT_CHECK_HOURS", default=DEFAULTS["SERVICE_ACCOUNT_CHECK_HOURS"])
if not 1 <= SERVICE_ACCOUNT_CHECK_HOURS <= 24 * 30:
    raise ImproperlyConfigured("SERVICE_ACCOUNT_CHECK_HOURS must be between 1 and 720 (30 days).")

# --- Alerts: a connection broke, or works again (services.alerts) ---
# Mail: EMAIL_URL as django-environ reads it (smtp://user:password@host:587/?tls=True, consolemail://, ...).
EMAIL_CONFIG = email_config(env, "EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25")
globals().update(EMAIL_CONFIG)  # EMAIL_BACKEND, EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, ...
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="kendis-integration@localhost")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
# ADMINS: comma-separated e-mail addresses ("Name <a@example.com>" works too); they get alerts of accounts
# without a Notify list, and Django's error mails.
ADMINS = [(name.strip(), address) for name, address in
          (parseaddr(entry) for entry in env_list("ADMINS")) if address]
# A grant that cannot be refreshed for this long is reported broken (needs re-authorization is reported at once).
ALERT_FAILING_AFTER_MINUTES = env.int("ALERT_FAILING_AFTER_MINUTES", default=DEFAULTS["ALERT_FAILING_AFTER_MINUTES"])
if not 1 <= ALERT_FAILING_AFTER_MINUTES <= 7 * 24 * 60:
    raise ImproperlyConfigured("ALERT_FAILING_AFTER_MINUTES must be between 1 and 10080 (a week).")
# Optional webhook (Slack-compatible JSON with a `text` field), signed with HMAC-SHA256 when a secret is set.
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default=DEFAULTS["ALERT_WEBHOOK_URL"])
if ALERT_WEBHOOK_URL and not ALERT_WEBHOOK_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured("ALERT_WEBHOOK_URL must be an http(s):// URL.")
ALERT_WEBHOOK_SECRET = env.str("ALERT_WEBHOOK_SECRET", default=DEFAULTS["ALERT_WEBHOOK_SECRET"])
# A delivery that keeps failing (SMTP down, webhook 500) is retried by every refresher run for this long.
ALERT_GIVE_UP_HOURS = env.int("ALERT_GIVE_UP_HOURS", default=DEFAULTS["ALERT_GIVE_UP_HOURS"])

# --- Metrics: /metrics (alm_accounts/health.py) answers Prometheus with `Authorization: Bearer <METRICS_TOKEN>` ---
# Unset: /metrics is off (404). Generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"
METRICS_TOKEN = env.str("METRICS_TOKEN", default=DEFAULTS["METRICS_TOKEN"]).strip()
if METRICS_TOKEN and (len(METRICS_TOKEN) < 24 or not METRICS_TOKEN.isascii() or not METRICS_TOKEN.isprintable()
                      or any(c.isspace() for c in METRICS_TOKEN)):
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 24 ASCII characters without spaces, e.g. the output of "
                               "python -c \"import secrets; print(secrets.token_urlsafe(32))\".")

# --- Logs: on stderr; LOG_FORMAT=json writes one JSON object per line (kendis_integration/logs.py) for log shippers.
LOG_FORMAT = env.str("LOG_FORMAT", default=DEFAULTS["LOG_FORMAT"]).strip().lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be plain or json.")
# Django's error mails (an unhandled exception → a 500) go to ADMINS from SERVER_EMAIL, outside DEBUG. What they
# show passes our filter (kendis_integration/error_reports.py): settings holding a credential (by name or by value),
# the OAuth callbacks' code and state, secret-looking parameters.
DEFAULT_EXCEPTION_REPORTER = "kendis_integration.error_reports.ExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "kendis_integration.error_reports.ExceptionReporterFilter"
EMAIL_SUBJECT_PREFIX = env.str("EMAIL_SUBJECT_PREFIX", default="[kendis-integration] ")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "kendis_integration.logs.JsonFormatter"},
    },
    "filters": {
        "redact_oauth_parameters": {"()": "alm_accounts.log_filters.RedactOAuthParameters"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
        # Defining the `django` logger below drops the handlers Django gives it by default: its error mails are
        # named again here, as Django defines them.
        "mail_admins": {"level": "ERROR", "filters": ["require_debug_false"],
                        "class": "django.utils.log.AdminEmailHandler"},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django": {"handlers": ["mail_admins"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO"),
                   "propagate": True},
        # runserver's access log: the callback's query string holds the authorization code and the state.
        "django.server": {"filters": ["redact_oauth_parameters"], "propagate": True},
    },
}
