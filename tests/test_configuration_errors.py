"""A configuration mistake is one clear line and exit code 78, never a traceback (issue 19).

Each case starts the real entry points in a subprocess with a clean environment
(no .env), as an operator's shell or systemd would: `manage.py check`, and
gunicorn with deploy/gunicorn.conf.py. Values that cannot mean what the variable
needs are refused instead of being guessed at (DEBUG=yes-please used to be false,
ALLOWED_HOSTS=https://... used to pass and then refuse every request).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Db-Password-Canary-61d0"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def development_env(tmp_path):
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ENV_FILE": "", "DEBUG": "true",
            "DJANGO_SETTINGS_MODULE": "kendis_integration.settings",
            "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}


CASES = {
    "missing-secret-key": (
        {"DEBUG": None},
        "Configuration error: The environment variable SECRET_KEY is required when DEBUG is off."),
    "database-url-not-a-url": (
        {"DATABASE_URL": "not-a-url"},
        "Configuration error: DATABASE_URL is not a database URL: use postgres://user:password@host:5432/kendis"),
    "database-url-bad-port": (
        {"DATABASE_URL": f"postgres://kendis:{PASSWORD}@db.internal:99999/kendis"},
        "Configuration error: DATABASE_URL is not a database URL (its host or port cannot be read)"),
    "database-url-unknown-scheme": (
        {"DATABASE_URL": f"mongodb://kendis:{PASSWORD}@db.internal/kendis"},
        "Configuration error: DATABASE_URL is not a database URL (unknown scheme 'mongodb')"),
    "email-url-bad-port": (
        {"EMAIL_URL": f"smtp://alerts:{PASSWORD}@mail.internal:smtp/?tls=True"},
        "Configuration error: EMAIL_URL is not a mail URL (its host or port cannot be read)"),
    "allowed-hosts-with-scheme": (
        {"ALLOWED_HOSTS": "https://kendis.example.com"},
        "Configuration error: ALLOWED_HOSTS holds host names, not URLs: write kendis.example.com, "
        "not https://kendis.example.com"),
    "allowed-hosts-with-port": (
        {"ALLOWED_HOSTS": "kendis.example.com:443"},
        "Configuration error: ALLOWED_HOSTS must be comma-separated host names without port"),
    "debug-not-a-boolean": (
        {"DEBUG": "yes-please"},
        "Configuration error: DEBUG must be true or false, not 'yes-please'."),
    "a-security-switch-not-a-boolean": (
        {"SECURE_SSL_REDIRECT": "maybe"},
        "Configuration error: SECURE_SSL_REDIRECT must be true or false, not 'maybe'."),
    "a-number-that-is-not-one": (
        {"OAUTH_STATE_TTL_SECONDS": "ten minutes"},
        "Configuration error: OAUTH_STATE_TTL_SECONDS must be a whole number."),
}


@pytest.mark.parametrize("case", CASES)
def test_a_configuration_error_is_one_line_from_manage_py_and_gunicorn(development_env, case):
    changes, expected = CASES[case]
    env = {**development_env, **{k: v for k, v in changes.items() if v is not None}}
    for name in [k for k, v in changes.items() if v is None]:
        env.pop(name)
    for args in (["manage.py", "check"], ["-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--check-config"]):
        result = run(env, *args)
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 78, (args, result.returncode, output[-3000:])
        assert output.splitlines() == [output.splitlines()[0]] and output.startswith(expected), (args, output)
        assert "Traceback" not in output and PASSWORD not in output


def test_good_values_still_pass(development_env):
    env = {**development_env, "DEBUG": "True", "ALLOWED_HOSTS": "kendis.example.com, .corp.example, 10.0.0.5, [::1]",
           "SECURE_SSL_REDIRECT": "off", "OAUTH_STATE_TTL_SECONDS": "300"}
    result = run(env, "manage.py", "check")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "System check identified no issues" in result.stdout
