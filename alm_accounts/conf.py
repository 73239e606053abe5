"""The app's settings in one place: every setting alm_accounts reads, its one default, read once.

    from alm_accounts.conf import app_settings
    Deadline(app_settings.JIRA_REFRESH_DEADLINE)

DEFAULTS below is the only place a default is written. kendis_integration/settings.py reads each of these
from the environment (and refuses a bad value with a one-line error) with `default=DEFAULTS[name]`; a settings
module that leaves one out gets the same default here. A name that is not in DEFAULTS raises AttributeError, so a
typo fails at once instead of falling back to a made-up value. Django's own settings (DEBUG, ADMINS, EMAIL_*,
DEFAULT_FROM_EMAIL, ROOT_URLCONF, AUTH_USER_MODEL...) and FIELD_ENCRYPTION_KEY (django-encrypted-model-fields
reads it too) stay `django.conf.settings`.

Values are read on first use and kept; a changed setting (override_settings, pytest-django's `settings` fixture)
is re-read through Django's `setting_changed` signal. django-oauth-toolkit's `oauth2_settings` is the model.
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

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
        self._cached = set()

    def __getattr__(self, name):
        # Only called for names not cached yet (cached ones are plain instance attributes).
        if name not in self._defaults:
            raise AttributeError(f"{name} is not a setting of alm_accounts (alm_accounts/conf.py lists them)")
        value = getattr(settings, name, self._defaults[name])
        if value is REQUIRED:
            raise ImproperlyConfigured(f"The setting {name} is required (kendis_integration/settings.py sets it).")
        self._cached.add(name)
        setattr(self, name, value)
        return value

    def reload(self, name=None):
        """Forget the kept values (one, or all), so that the next read sees the settings as they are now."""
        for cached in [name] if name else list(self._cached):
            if cached in self._cached:
                self._cached.discard(cached)
                delattr(self, cached)


app_settings = AppSettings(DEFAULTS)


def _setting_changed(*, setting, **kwargs):
    if setting in DEFAULTS:
        app_settings.reload(setting)


setting_changed.connect(_setting_changed)
