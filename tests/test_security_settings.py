"""Production settings: secure by default with only the required variables, each knob adjustable.

The real settings module runs in a subprocess with a clean environment
(ENV_FILE='' so no .env is read), as a production server would start.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from tests.conftest import production_settings, query_of, run

PUBLIC = "https://kendis.example.com"


def test_check_deploy_is_clean_with_only_the_required_variables(production_env):
    result = run(production_env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues (0 silenced)." in output
    assert "WARNINGS" not in output and "security.W" not in output


def test_check_deploy_warns_when_a_security_default_is_switched_off(production_env):
    """The clean result above is the settings' doing: switching one knob off is reported."""
    result = run({**production_env, "SESSION_COOKIE_SECURE": "false", "SECURE_HSTS_SECONDS": "0"},
                 "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "security.W012" in output  # SESSION_COOKIE_SECURE
    assert "security.W004" in output  # HSTS


def test_secure_by_default_outside_debug(production_env):
    values = production_settings(production_env, (
        "dict(debug=settings.DEBUG, ssl_redirect=settings.SECURE_SSL_REDIRECT, "
        "session_secure=settings.SESSION_COOKIE_SECURE, csrf_secure=settings.CSRF_COOKIE_SECURE, "
        "hsts=settings.SECURE_HSTS_SECONDS, hsts_sub=settings.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
        "httponly=settings.SESSION_COOKIE_HTTPONLY, frame=settings.X_FRAME_OPTIONS, "
        "nosniff=settings.SECURE_CONTENT_TYPE_NOSNIFF, "
        "proxy=getattr(settings, 'SECURE_PROXY_SSL_HEADER', None), "
        "callback=callback_url_for('A' * 22), csrf_origins=settings.CSRF_TRUSTED_ORIGINS)"
    ))
    assert values == {
        "debug": False, "ssl_redirect": True, "session_secure": True, "csrf_secure": True, "hsts": 31536000,
        "hsts_sub": True, "httponly": True, "frame": "DENY", "nosniff": True, "proxy": None,
        "callback": f"{PUBLIC}/oauth/jira/callback/{'A' * 22}/", "csrf_origins": [PUBLIC],
    }


def test_each_security_knob_is_adjustable_from_the_environment(production_env):
    env = {**production_env, "SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false",
           "CSRF_COOKIE_SECURE": "false", "SECURE_HSTS_SECONDS": "60", "SECURE_HSTS_INCLUDE_SUBDOMAINS": "false",
           "SECURE_HSTS_PRELOAD": "false", "CSRF_TRUSTED_ORIGINS": "https://a.example.com,https://b.example.com"}
    values = production_settings(env, (
        "[settings.SECURE_SSL_REDIRECT, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, "
        "settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_INCLUDE_SUBDOMAINS, settings.SECURE_HSTS_PRELOAD, "
        "settings.CSRF_TRUSTED_ORIGINS]"
    ))
    assert values == [False, False, False, 60, False, False, ["https://a.example.com", "https://b.example.com"]]


@pytest.mark.parametrize("public_base_url", ["http://kendis.example.com", "HTTP://kendis.example.com"])
def test_http_public_base_url_outside_debug_is_refused(production_env, public_base_url):
    result = run({**production_env, "PUBLIC_BASE_URL": public_base_url}, "manage.py", "check")
    assert result.returncode != 0
    assert "PUBLIC_BASE_URL must" in result.stderr
    assert "https://" in result.stderr.strip().splitlines()[-1]


def test_http_public_base_url_is_allowed_in_debug(production_env):
    env = {**production_env, "DEBUG": "true", "PUBLIC_BASE_URL": "http://127.0.0.1:8000"}
    expected = f"http://127.0.0.1:8000/oauth/jira/callback/{'A' * 22}/"
    assert production_settings(env, "callback_url_for('A' * 22)") == expected


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS", "PUBLIC_BASE_URL", "FIELD_ENCRYPTION_KEY"])
def test_a_missing_required_variable_stops_the_start_with_its_name(production_env, missing):
    env = {k: v for k, v in production_env.items() if k != missing}
    result = run(env, "manage.py", "check")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"The environment variable {missing} is required when DEBUG is off" in last_line


@pytest.mark.parametrize("value", ["HTTP_X_FORWARDED_PROTO,https", "HTTP_X_FORWARDED_PROTO, https"])
def test_secure_proxy_ssl_header_is_switched_on_from_the_environment(production_env, value):
    env = {**production_env, "SECURE_PROXY_SSL_HEADER": value}
    assert production_settings(env, "settings.SECURE_PROXY_SSL_HEADER") == ["HTTP_X_FORWARDED_PROTO", "https"]


@pytest.mark.parametrize("value", ["HTTP_X_FORWARDED_PROTO", "X-Forwarded-Proto,https", "HTTP_X_FORWARDED_PROTO,",
                                   "HTTP_X_FORWARDED_PROTO,https,http"])
def test_a_malformed_secure_proxy_ssl_header_is_refused_clearly(production_env, value):
    """A value that could never match would send every request behind the proxy into an https redirect loop."""
    result = run({**production_env, "SECURE_PROXY_SSL_HEADER": value}, "manage.py", "check")
    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER must be 'HEADER,value', e.g. HTTP_X_FORWARDED_PROTO,https" in result.stderr


def served_in_production(env: dict[str, str], *forwarded_protos: str | None) -> list[list]:
    """[status, Location] of GET /admin/login/ served by the production settings in a fresh process, once per
    X-Forwarded-Proto value (None: no such header), as the request arrives from a TLS-terminating proxy."""
    collected = run(env, "manage.py", "collectstatic", "--noinput")  # as at deploy: pages name the hashed files
    assert collected.returncode == 0, collected.stderr[-3000:]
    code = ("import json, sys, django; django.setup(); from django.test import Client; "
            "client = Client(HTTP_HOST='kendis.example.com'); "
            "print(json.dumps([[r.status_code, r.get('Location', '')] for r in ("
            "client.get('/admin/login/', headers={'X-Forwarded-Proto': proto} if proto else {}) "
            "for proto in json.loads(sys.argv[1]))]))")
    result = run(env, "-c", code, json.dumps(forwarded_protos))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_behind_a_tls_proxy_requests_count_as_https(production_env):
    """With SECURE_PROXY_SSL_HEADER set in the environment, a request the proxy marks https is served, not sent
    to https again (a redirect loop); a plain one is still redirected. Without the variable the same request
    loops: the setting is what makes the difference."""
    https = "https://kendis.example.com/admin/login/"
    behind_proxy = {**production_env, "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https"}

    assert served_in_production(behind_proxy, "https", None, "http") == [[200, ""], [301, https], [301, https]]
    assert served_in_production(production_env, "https") == [[301, https]]


def test_callback_url_comes_from_public_base_url_not_from_the_request(admin_client, account, settings):
    """Behind a reverse proxy the app sees an internal host; Jira must get the public https URL."""
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.ALLOWED_HOSTS = ["internal-app", "testserver"]
    expected = f"{PUBLIC}/oauth/jira/callback/{account.callback_id}/"
    url = reverse("admin:alm_accounts_almaccount_change", args=[account.pk])
    headers = {"Host": "internal-app", "X-Forwarded-Host": "evil.example.net"}

    page = admin_client.get(url, headers=headers).content.decode()
    start = admin_client.post(url, {
        "alm_type": "jira", "name": account.name, "authentication": "jira_server_oauth2",
        "base_url": account.base_url, "client_id": account.client_id, "client_secret": "", "scope": "ADMIN",
        "_get_auth_token": "Get Auth Token"}, headers=headers)

    assert f'value="{expected}"' in page
    assert "internal-app" not in page.split('id="callback-url"')[1][:300]
    assert query_of(start["Location"])["redirect_uri"] == expected
    assert urlsplit(expected).scheme == "https"
