"""Settings for the test suite: the real settings, fed a fixed test environment.

Values here are defaults only: CI sets DATABASE_URL to run the same suite on
PostgreSQL. The developer's .env is ignored so tests never depend on it.
"""

import os

os.environ["ENV_FILE"] = ""
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
# A fixed, public test key (never used outside tests).
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "n8kL0dTb8K3xQ5Nf4o9hZ2Yp6Wq1Rj7Vc0Sa3Ue5Gm8=")
os.environ.setdefault("PUBLIC_BASE_URL", "http://testserver")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("JIRA_RETRY_BACKOFF", "0,0")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Pages render with the apps' static files as they are, whatever DEBUG a test sets: the hashed names of the
# production storage exist only after collectstatic (tests/test_production_profile.py runs that for real).
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
# whitenoise finds them in the apps too (as in DEBUG), whatever DEBUG a test sets, with no STATIC_ROOT to read.
WHITENOISE_AUTOREFRESH = WHITENOISE_USE_FINDERS = True
