"""The app's settings in one place: every setting alm_accounts reads, with its one default.

    from alm_accounts.conf import app_settings
    Deadline(app_settings.JIRA_REFRESH_DEADLINE)

DEFAULTS below is the only place a default is written. kendis_integration/settings.py reads each of these
from the environment (and refuses a bad value with a one-line error) with `default=DEFAULTS[name]`; a settings
module that leaves one out gets the same default here. A name that is not in DEFAULTS raises AttributeError, so a
typo fails at once instead of falling back to a made-up value. Django's own settings (DEBUG, ADMINS, EMAIL_*,
DEFAULT_FROM_EMAIL, ROOT_URLCONF, AUTH_USER_MODEL...) and FIELD_ENCRYPTION_KEY (django-encrypted-model-fields
reads it too) stay `django.conf.settings`.

Each read goes through django.conf.settings, so override_settings and pytest-django's `settings` fixture (which
also deletes settings) reach the app as they are. django-oauth-toolkit's `oauth2_settings` is the model (a
DEFAULTS table, attribute access, unknown names refused); unlike it, nothing is cached here (see __getattr__).
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

REQUIRED = object()  # no default: the settings module must set it (kendis_integration/settings.py requires it)

DEFAULTS = {
    # The origin Jira redirects back to; every callback URL is built from it.
    "PUBLIC_BASE_URL": REQUIRED,
    # Calls to Jira (seconds): connecting, reading, the pauses between attempts that could not reach Jira, and
    # one budget per token refresh or code exchange (connecting, reading and retries together).
    "JIRA_CONNECT_TIMEOUT": 5.0,
    "JIRA_READ_TIMEOUT": 30.0,
    "JIRA_RETRY_BACKOFF": (0.5, 2.0),
    "JIRA_REFRESH_DEADLINE": 20.0,
    # How calls leave for Jira (egress.py): a PEM bundle instead of certifi's, the egress proxy, hosts without it.
    "JIRA_CA_BUNDLE": "",
    "JIRA_PROXY_URL": "",
    "JIRA_NO_PROXY": (),
    # Jira Cloud: the deployment's own OAuth 2.0 (3LO) app, and Atlassian's two hosts.
    "ATLASSIAN_CLIENT_ID": "",
    "ATLASSIAN_CLIENT_SECRET": "",
    "ATLASSIAN_AUTH_URL": "https://auth.atlassian.com",
    "ATLASSIAN_API_URL": "https://api.atlassian.com",
    # How long a "Get Auth Token" may wait for Jira's redirect.
    "OAUTH_STATE_TTL_SECONDS": 600,
    # How often the refresher verifies a service account's connection by asking for a token (hours): there is no
    # refresh token to keep alive, this is how a deleted or disabled service account is noticed.
    "SERVICE_ACCOUNT_CHECK_HOURS": 24,
    # How often the refresher runs (the --loop interval; the health checks expect a run this often).
    "REFRESHER_INTERVAL_SECONDS": 300,
    # Alerts: when a failing grant is reported broken, the optional webhook and its signing secret, and how long
    # a delivery that keeps failing is retried.
    "ALERT_FAILING_AFTER_MINUTES": 30,
    "ALERT_WEBHOOK_URL": "",
    "ALERT_WEBHOOK_SECRET": "",
    "ALERT_GIVE_UP_HOURS": 24,
    # /metrics answers with this bearer token only; unset, /metrics is off.
    "METRICS_TOKEN": "",
    # plain or json: the format of log lines (the refresher's own lines follow it too).
    "LOG_FORMAT": "plain",
}


class AppSettings:
    """Attribute access to the settings named in DEFAULTS: the project's value, else the default."""

    def __init__(self, defaults):
        self._defaults = defaults

    def __getattr__(self, name):
        if name not in self._defaults:
            raise AttributeError(f"{name} is not a setting of alm_accounts (alm_accounts/conf.py lists them)")
        # Read through django.conf.settings every time, not kept here: Django already keeps each value, and
        # forgets it whenever a test overrides or deletes a setting (a deleted one sends no setting_changed,
        # so a copy kept here would go stale).
        value = getattr(settings, name, self._defaults[name])
        if value is REQUIRED:
            raise ImproperlyConfigured(f"The setting {name} is required (kendis_integration/settings.py sets it).")
        return value


app_settings = AppSettings(DEFAULTS)
