"""Settings of the Jira sandbox (development only, never for production).

Everything a test may want to vary is an environment variable; the rest is
fixed on purpose so the sandbox behaves the same on every machine:

- SANDBOX_DATABASE_PATH: the SQLite file (default jira_sandbox/sandbox.sqlite3)
- SANDBOX_ADMIN_PASSWORD: password of jira-admin, applied by `sandbox_setup`
  (default sandbox-admin)
- SANDBOX_USER2_PASSWORD: password of jira-user2, a Jira user without admin
  rights, applied by `sandbox_setup` (default sandbox-user2)
- SANDBOX_ACCESS_TOKEN_SECONDS: access token lifetime, `expires_in` (default 7200)
- SANDBOX_SERVICE_ACCOUNT_TOKEN_SECONDS: lifetime of a service account's token (client
  credentials, no refresh token), `expires_in` (default 3600, "about an hour" as Jira documents)
- SANDBOX_AUTHORIZATION_CODE_SECONDS: authorization code lifetime (default 10, as Jira)
- SANDBOX_REFRESH_TOKEN_SECONDS: refresh token lifetime (default 90 days)
- SANDBOX_TOKEN_LATENCY_MS: sleep added to every token request (default 0)
- SANDBOX_SEARCH_MAX_RESULTS: the most issues one /rest/api/2/search page holds,
  whatever the client asks for (default 1000, as Jira's jira.search.views.default.max)

Atlassian Cloud (the authorization server under /cloud-auth/, the API gateway
under /cloud-api/, see jira_sandbox/cloud/):

- SANDBOX_CLOUD_CLIENT_ID, SANDBOX_CLOUD_CLIENT_SECRET, SANDBOX_CLOUD_CALLBACK_URL:
  the developer console app `sandbox_setup` registers (defaults sandbox-cloud-client-id,
  sandbox-cloud-secret-dev-only-not-a-secret, http://127.0.0.1:8000/oauth/atlassian/callback/)
- SANDBOX_CLOUD_ACCESS_TOKEN_SECONDS: access token lifetime, `expires_in` (default 3600)
- SANDBOX_CLOUD_AUTHORIZATION_CODE_SECONDS: authorization code lifetime (default 300)
- SANDBOX_CLOUD_REUSE_LEEWAY_SECONDS: how long a replaced refresh token (and its
  access token) still works; reused later, the token family dies (default 600)
- SANDBOX_CLOUD_REFRESH_IDLE_SECONDS: a refresh token dies this long after it
  was issued, unused (default 90 days)
- SANDBOX_CLOUD_REFRESH_ABSOLUTE_SECONDS: every refresh token of a consent dies
  this long after the first consent (default 365 days)
- SANDBOX_TOKEN_LATENCY_MS applies to the Cloud token endpoint too.

Cookie names are prefixed because browsers share cookies between ports
of one host: on 127.0.0.1 the sandbox and the main app would otherwise log each
other out and break each other's CSRF tokens.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent


def _env_int(name, default):
    return int(os.environ.get(name, default))


# A fixed key is acceptable because this server only ever holds throwaway data.
SECRET_KEY = "jira-sandbox-dev-only-not-a-secret-0c4f6e1b"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Before applinks: its admin module replaces the Application admin DOT registers.
    "oauth2_provider",
    "jira_sandbox.applinks",
    "jira_sandbox.issues",
    "jira_sandbox.cloud",
    "jira_sandbox.serviceaccounts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "jira_sandbox.urls"

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

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SANDBOX_DATABASE_PATH") or BASE_DIR / "sandbox.sqlite3",
        "OPTIONS": {
            # runserver is threaded and management commands write while it runs:
            # WAL plus immediate transactions serialise writers instead of failing
            # with "database is locked", so two concurrent refreshes of one token
            # behave like Jira (one wins, the other gets invalid_grant).
            "init_command": "PRAGMA journal_mode=WAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = []  # dev only: the users' passwords come from the environment
# DOT stores client secrets hashed with the first of these and checks the hash
# on every token request. PBKDF2 would add ~0.4 s to each one, where Jira answers
# in milliseconds, and would skew latency benchmarks. Throwaway data, so MD5.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "/login/"
# The home page sends administrators on to /admin/ and tells anyone else who they are.
LOGIN_REDIRECT_URL = "/"

SESSION_COOKIE_NAME = "jira_sandbox_sessionid"
CSRF_COOKIE_NAME = "jira_sandbox_csrftoken"
LANGUAGE_COOKIE_NAME = "jira_sandbox_language"
# The default message storage keeps messages in a cookie named "messages",
# which the main app on the same host would read and clear.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"

# DOT swaps its Application model for ours, which carries the link's Permission.
OAUTH2_PROVIDER_APPLICATION_MODEL = "applinks.IncomingLink"

SANDBOX_ACCESS_TOKEN_SECONDS = _env_int("SANDBOX_ACCESS_TOKEN_SECONDS", 7200)
SANDBOX_SERVICE_ACCOUNT_TOKEN_SECONDS = _env_int("SANDBOX_SERVICE_ACCOUNT_TOKEN_SECONDS", 3600)


def _access_token_seconds(request):
    """oauthlib asks for expires_in per request: a service account's tokens live about an hour, a person's 2 h."""
    if request.grant_type == "client_credentials":
        return SANDBOX_SERVICE_ACCOUNT_TOKEN_SECONDS
    return SANDBOX_ACCESS_TOKEN_SECONDS


OAUTH2_PROVIDER = {
    "SCOPES": {
        "READ": "View Jira data",
        "WRITE": "View and change Jira data",
        "ADMIN": "Administer projects, view and change Jira data",
        "SYSTEM_ADMIN": "Administer the whole Jira instance",
    },
    # Jira has no default scope: a request without one is refused.
    "DEFAULT_SCOPES": [],
    "SCOPES_BACKEND_CLASS": "jira_sandbox.scopes.LinkPermissionScopes",
    "OAUTH2_VALIDATOR_CLASS": "jira_sandbox.oauth.JiraLikeValidator",
    "OAUTH2_BACKEND_CLASS": "jira_sandbox.oauth.JiraLikeOAuthLibCore",
    "ACCESS_TOKEN_EXPIRE_SECONDS": _access_token_seconds,
    # Jira documents a 10 s default: clients must redeem the code in the callback.
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": _env_int("SANDBOX_AUTHORIZATION_CODE_SECONDS", 10),
    # DOT counts this from the expiry of the refresh token's access token.
    "REFRESH_TOKEN_EXPIRE_SECONDS": _env_int("SANDBOX_REFRESH_TOKEN_SECONDS", 90 * 24 * 3600),
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "PKCE_REQUIRED": True,
    # The e2e tests use http://127.0.0.1:<port>; real Jira would insist on https.
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
    # Jira asks for consent every time.
    "REQUEST_APPROVAL_PROMPT": "force",
}

SANDBOX_TOKEN_LATENCY_MS = _env_int("SANDBOX_TOKEN_LATENCY_MS", 0)
SANDBOX_ADMIN_PASSWORD = os.environ.get("SANDBOX_ADMIN_PASSWORD", "sandbox-admin")
SANDBOX_USER2_PASSWORD = os.environ.get("SANDBOX_USER2_PASSWORD", "sandbox-user2")
SANDBOX_SEARCH_MAX_RESULTS = _env_int("SANDBOX_SEARCH_MAX_RESULTS", 1000)
SANDBOX_JIRA_VERSION = "9.12.2"
SANDBOX_SERVER_TITLE = "Jira Sandbox"

SANDBOX_CLOUD_CLIENT_ID = os.environ.get("SANDBOX_CLOUD_CLIENT_ID", "sandbox-cloud-client-id")
# Dev only, like SECRET_KEY above: the sandbox app's secret protects throwaway data.
SANDBOX_CLOUD_CLIENT_SECRET = os.environ.get(
    "SANDBOX_CLOUD_CLIENT_SECRET", "sandbox-cloud-secret-dev-only-not-a-secret"
)
SANDBOX_CLOUD_CALLBACK_URL = os.environ.get(
    "SANDBOX_CLOUD_CALLBACK_URL", "http://127.0.0.1:8000/oauth/atlassian/callback/"
)
SANDBOX_CLOUD_ACCESS_TOKEN_SECONDS = _env_int("SANDBOX_CLOUD_ACCESS_TOKEN_SECONDS", 3600)
# Atlassian does not document it; five minutes is ample for a client that redeems in its callback.
SANDBOX_CLOUD_AUTHORIZATION_CODE_SECONDS = _env_int("SANDBOX_CLOUD_AUTHORIZATION_CODE_SECONDS", 300)
SANDBOX_CLOUD_REUSE_LEEWAY_SECONDS = _env_int("SANDBOX_CLOUD_REUSE_LEEWAY_SECONDS", 600)
SANDBOX_CLOUD_REFRESH_IDLE_SECONDS = _env_int("SANDBOX_CLOUD_REFRESH_IDLE_SECONDS", 90 * 24 * 3600)
SANDBOX_CLOUD_REFRESH_ABSOLUTE_SECONDS = _env_int("SANDBOX_CLOUD_REFRESH_ABSOLUTE_SECONDS", 365 * 24 * 3600)
