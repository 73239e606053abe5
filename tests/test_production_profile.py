"""The production profile: gunicorn with deploy/gunicorn.conf.py, whitenoise, database settings, logs, error mails.

Where the settings differ from the test settings, the real settings module runs
in a subprocess with a clean environment (ENV_FILE='' so no .env is read), as a
production server starts; gunicorn runs for real on a free port.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import logging
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.fernet import Fernet
from django.core import mail
from django.urls import reverse

from alm_accounts import services
from alm_accounts.jira import JiraClient
from alm_accounts.models import PendingAuthorization
from kendis_integration.logs import JsonFormatter, RedactCallbackQuery
from tests.conftest import ACCESS_TOKEN, REFRESH_TOKEN, TOKEN_URL, token_answer
from tests.doubles.servers import SMTPSink, free_port

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = "https://kendis.example.com"
CALLBACK_PATH = "/oauth/jira/callback/" + "A" * 22 + "/"
CODE, STATE = "AUTHCODE-AccessLogCanary-4f2e9d", "STATE-AccessLogCanary-8b1c7a"


def run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def production_settings(env: dict[str, str], expression: str):
    """Evaluate `expression` (JSON-serialisable) with the production settings loaded."""
    result = run(env, "-c", f"import json, django; django.setup(); from django.conf import settings; "
                            f"print(json.dumps({expression}))")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def silent_database():
    """A port that accepts connections and never answers (a PostgreSQL that does not respond); counts who came."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        server.close()


# --------------------------------------------------------------------------
# collectstatic and check --deploy on a build host that cannot reach the database
# --------------------------------------------------------------------------


def test_collectstatic_and_check_deploy_never_touch_the_database(production_env, tmp_path):
    with silent_database() as (port, connections):
        env = {**production_env, "DATABASE_URL": f"postgres://kendis:kendis@127.0.0.1:{port}/kendis",
               "DATABASE_CONNECT_TIMEOUT": "2"}

        collected = run(env, "manage.py", "collectstatic", "--noinput")
        checked = run(env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
        assert connections == [], "collectstatic or check --deploy connected to the database"

        assert collected.returncode == 0, collected.stderr[-3000:]
        manifest = json.loads((tmp_path / "staticfiles" / "staticfiles.json").read_text())["paths"]
        hashed = manifest["admin/css/base.css"]
        assert re.fullmatch(r"admin/css/base\.[0-9a-f]{12}\.css", hashed)
        assert (tmp_path / "staticfiles" / f"{hashed}.gz").is_file()  # compressed copies are served as they are
        assert "alm_accounts/" in " ".join(manifest)  # the app's own files (the Copy URL script) are collected
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "System check identified no issues (0 silenced)." in checked.stdout

        # Where the database is meant to be used, the checks that read it do run (and a database that does not
        # answer costs DATABASE_CONNECT_TIMEOUT seconds, not a hang).
        with_database = run(env, "manage.py", "check", "--database", "default", timeout=60)
        assert with_database.returncode == 0, with_database.stderr[-3000:]
        assert connections, "check --database default never asked the database"


def test_unreadable_stored_secrets_are_reported_where_the_database_is_used(production_env, tmp_path):
    """E002 reads the database: `check`, `check --database default` and `migrate` report it; `check --deploy`
    (build hosts without the database) does not."""
    env = {**production_env, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    assert run(env, "manage.py", "migrate", "--noinput").returncode == 0
    stored = run(env, "-c", "import django; django.setup(); from alm_accounts.models import ALMAccount; "
                            "ALMAccount.objects.create(name='Jira', base_url='https://jira.example.com', "
                            "client_id='cid', client_secret='stored-with-the-old-key')")
    assert stored.returncode == 0, stored.stderr[-3000:]
    wrong_key = {**env, "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode()}

    deploy = run(wrong_key, "manage.py", "check", "--deploy")
    assert "alm_accounts.E002" not in deploy.stdout + deploy.stderr
    for command in (["check"], ["check", "--database", "default"], ["migrate", "--noinput"]):
        result = run(wrong_key, "manage.py", *command)
        assert result.returncode != 0, command
        assert "alm_accounts.E002" in result.stderr and "1 stored secret(s) cannot be decrypted" in result.stderr
        assert "stored-with-the-old-key" not in result.stdout + result.stderr


def test_sqlite_with_debug_off_is_warned_w002(production_env, tmp_path):
    sqlite = {**production_env, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    result = run(sqlite, "manage.py", "check")
    assert result.returncode == 0
    assert "alm_accounts.W002" in result.stderr
    assert "single write lock" in result.stderr and "PostgreSQL" in result.stderr

    for quiet in (production_env, {**sqlite, "DEBUG": "true"}):  # PostgreSQL; SQLite in development
        result = run(quiet, "manage.py", "check")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "alm_accounts.W002" not in result.stdout + result.stderr


def test_postgresql_connections_are_health_checked_time_out_and_take_sslmode_from_the_url(production_env):
    base = production_env["DATABASE_URL"]
    expression = "[settings.DATABASES['default'].get('CONN_HEALTH_CHECKS'), settings.DATABASES['default']['OPTIONS']]"
    assert production_settings(production_env, expression) == [True, {"connect_timeout": 10}]
    assert production_settings({**production_env, "DATABASE_CONNECT_TIMEOUT": "3",
                                "DATABASE_URL": base + "?sslmode=require"}, expression) == [
        True, {"connect_timeout": 3, "sslmode": "require"}]
    result = run({**production_env, "DATABASE_CONNECT_TIMEOUT": "0"}, "manage.py", "check")
    assert result.returncode != 0
    assert "DATABASE_CONNECT_TIMEOUT must be a number of seconds between 1 and 300." in result.stderr


# --------------------------------------------------------------------------
# gunicorn: its configuration, static files, the access log
# --------------------------------------------------------------------------


def gunicorn_config(env: dict[str, str]) -> dict[str, str]:
    result = run(env, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--print-config")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return dict(re.match(r"(\w+)\s+= ?(.*)", line).groups() for line in result.stdout.splitlines()
                if re.match(r"\w+\s+=", line))


def test_gunicorn_config_defaults_suit_two_cores_behind_a_local_proxy(production_env):
    config = gunicorn_config(production_env)
    assert config["wsgi_app"] == "kendis_integration.wsgi:application"
    assert config["bind"] == "['127.0.0.1:8000']"
    assert config["worker_class"] == "gthread" and int(config["threads"]) >= 2
    assert int(config["workers"]) >= 2
    assert int(config["timeout"]) > 20 and int(config["graceful_timeout"]) > 20  # JIRA_REFRESH_DEADLINE's default
    assert config["forwarded_allow_ips"] == "['127.0.0.1', '::1']"
    assert config["accesslog"] == "-"
    assert "%(r)s" not in config["access_log_format"] and "%(q)s" not in config["access_log_format"]
    assert config["logger_class"] == "kendis_integration.gunicorn_logging.Logger"


def test_gunicorn_config_reads_the_environment(production_env):
    config = gunicorn_config({**production_env, "PORT": "5000", "GUNICORN_WORKERS": "5", "GUNICORN_THREADS": "8",
                              "JIRA_REFRESH_DEADLINE": "100", "FORWARDED_ALLOW_IPS": "10.0.0.0/8"})
    assert config["bind"] == "['0.0.0.0:5000']"
    assert (config["workers"], config["threads"]) == ("5", "8")
    assert int(config["timeout"]) > 100 and int(config["graceful_timeout"]) > 100
    assert config["forwarded_allow_ips"] == "['10.0.0.0/8']"
    config = gunicorn_config({**production_env, "PORT": "5000", "GUNICORN_BIND": "unix:/run/kendis/web.sock"})
    assert config["bind"] == "['unix:/run/kendis/web.sock']"


def test_gunicorn_config_reads_the_env_file_as_the_app_does(production_env, tmp_path):
    """A refresh deadline raised in .env raises the worker timeout with it (and the app's logs' format)."""
    env_file = tmp_path / "app.env"
    env_file.write_text("JIRA_REFRESH_DEADLINE=200\nGUNICORN_THREADS=6\n")
    config = gunicorn_config({**production_env, "ENV_FILE": str(env_file), "GUNICORN_THREADS": "3"})
    assert int(config["timeout"]) > 200 and int(config["graceful_timeout"]) > 200
    assert config["threads"] == "3"  # a real variable wins over the file


def test_gunicorn_refuses_a_worker_timeout_shorter_than_the_refresh_deadline(production_env):
    result = run({**production_env, "JIRA_REFRESH_DEADLINE": "100", "GUNICORN_TIMEOUT": "50"},
                 "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--check-config")
    assert result.returncode != 0
    assert "GUNICORN_TIMEOUT (50 s) must be longer than JIRA_REFRESH_DEADLINE (100 s)" in result.stdout + result.stderr


@contextlib.contextmanager
def gunicorn(env: dict[str, str], log_path: Path):
    """gunicorn as deployed (deploy/gunicorn.conf.py), DEBUG off, behind a proxy on 127.0.0.1 saying https."""
    port = free_port()
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1", "GUNICORN_THREADS": "2",
           "ALLOWED_HOSTS": "kendis.example.com,127.0.0.1"}
    base = f"http://127.0.0.1:{port}"
    session = requests.Session()
    session.headers["X-Forwarded-Proto"] = "https"  # believed from 127.0.0.1: gunicorn's forwarded_allow_ips
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"], cwd=ROOT,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            try:
                session.get(base + "/admin/login/", timeout=10)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield base, session
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log_path.read_text()[-3000:]  # a clean, graceful stop


@pytest.fixture
def deployed(production_env, tmp_path):
    """The deploy steps: migrate (SQLite here) and collectstatic."""
    env = {**production_env, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    for step in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        result = run(env, "manage.py", *step)
        assert result.returncode == 0, result.stderr[-3000:]
    return env


def test_gunicorn_serves_the_admin_with_its_static_files_compressed_and_cached(deployed, tmp_path):
    with gunicorn(deployed, tmp_path / "gunicorn.log") as (base, session):
        login = session.get(base + "/admin/login/")
        assert login.status_code == 200
        css = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login.text).group(1)
        response = session.get(base + css, headers={"Accept-Encoding": "gzip"})
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/css")
        assert response.headers["Content-Encoding"] == "gzip"
        assert "immutable" in response.headers["Cache-Control"]
        assert "#header" in response.text  # really the admin's stylesheet
        plain_http = requests.get(base + css, allow_redirects=False)  # not through the proxy: https first
        assert plain_http.status_code == 301 and plain_http.headers["Location"].startswith("https://")


def request_the_callback(base: str, session: requests.Session) -> None:
    url = f"{base}{CALLBACK_PATH}?code={CODE}&state={STATE}"
    session.get(url, allow_redirects=False)  # through the proxy: the view takes the query out of the request
    requests.get(url, allow_redirects=False)  # plain http: redirected to https before the view, query and all
    # A browser that came back from the callback names it as the Referer of what it loads next.
    session.get(base + "/admin/login/", headers={"Referer": f"{PUBLIC}{CALLBACK_PATH}?code={CODE}&state={STATE}"})


def test_the_access_log_never_writes_the_callbacks_code_and_state(deployed, tmp_path):
    log_path = tmp_path / "gunicorn.log"
    with gunicorn(deployed, log_path) as (base, session):
        request_the_callback(base, session)
    log = log_path.read_text()
    assert f'"GET {CALLBACK_PATH} HTTP/1.1" 302' in log, log[-3000:]  # the access log is written, path and all
    assert f'"GET {CALLBACK_PATH} HTTP/1.1" 301' in log  # redirected to https before the view took the query
    for secret in (CODE, STATE, "AccessLogCanary"):
        assert secret not in log, log[-3000:]


def test_json_logs_and_an_access_log_format_asking_for_the_query_still_hide_code_and_state(deployed, tmp_path):
    """LOG_FORMAT=json: every line gunicorn and the app write is one JSON object. And an operator's format with
    the request line, the query, the raw URI and the Referer gets them redacted."""
    log_path = tmp_path / "gunicorn.log"
    hostile = '%(r)s | %(q)s | %({raw_uri}e)s | %({query_string}e)s | %(f)s | %({referer}i)s'
    env = {**deployed, "LOG_FORMAT": "json", "GUNICORN_CMD_ARGS": f"--access-logformat {shlex.quote(hostile)}"}
    with gunicorn(env, log_path) as (base, session):
        request_the_callback(base, session)
        session.get(base + "/no-such-page/?code=" + CODE)  # Django logs a 404 with its request
    log = log_path.read_text()
    for secret in (CODE, STATE, "AccessLogCanary"):
        assert secret not in log, log[-3000:]
    records = [json.loads(line) for line in log.splitlines() if line.strip()]
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    callbacks = {r["status"]: r for r in access if r["path"] == CALLBACK_PATH}
    assert callbacks[301]["message"] == (
        f"GET {CALLBACK_PATH}?[redacted] HTTP/1.1 | [redacted] | {CALLBACK_PATH}?[redacted] | [redacted] | - | -")
    assert (callbacks[302]["method"], callbacks[302]["level"]) == ("GET", "INFO")
    assert callbacks[302]["message"].startswith(f"GET {CALLBACK_PATH}?[redacted] HTTP/1.1 | ")
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in records)
    not_found = next(r for r in records if r["logger"] == "django.request")
    assert not_found["message"] == "Not Found: /no-such-page/" and not_found["status_code"] == 404


def test_gunicorns_error_log_redacts_the_callback_query_of_a_request_it_names():
    # gunicorn's own words when a request fails outside the app: "Error handling request <method> <uri>".
    record = logging.LogRecord("gunicorn.error", logging.ERROR, __file__, 1, "Error handling request %s %s",
                               ("GET", f"{CALLBACK_PATH}?code={CODE}&state={STATE}"), None)
    RedactCallbackQuery().filter(record)
    assert record.getMessage() == f"Error handling request GET {CALLBACK_PATH}?[redacted]"


# --------------------------------------------------------------------------
# Logs: JSON lines, one line per refresh result, Django's error mails
# --------------------------------------------------------------------------


def test_log_format_json_writes_one_json_object_per_line(production_env):
    code = ("import django, logging; django.setup(); "
            "logging.getLogger('alm_accounts.services').warning('Token refresh of %s: %s', 'ALM account 7', "
            "'failed', extra={'account_id': 7, 'outcome': 'failed'}); "
            "logging.getLogger('alm_accounts').info('second line\\nwith a line break')")
    result = run({**production_env, "LOG_FORMAT": "json"}, "-c", code)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "Token refresh of ALM account 7: failed"
    assert (first["level"], first["logger"], first["account_id"], first["outcome"]) == (
        "WARNING", "alm_accounts.services", 7, "failed")
    assert first["time"] and first["pid"]
    assert second["message"] == "second line\nwith a line break"

    plain = run(production_env, "-c", code)
    assert "WARNING alm_accounts.services Token refresh of ALM account 7: failed" in plain.stderr
    refused = run({**production_env, "LOG_FORMAT": "xml"}, "manage.py", "check")
    assert refused.returncode != 0 and "LOG_FORMAT must be plain or json." in refused.stderr


def test_every_refresh_result_is_one_log_line_with_ids_and_outcome(connected_account, mocked_jira, caplog):
    caplog.set_level(logging.INFO, logger="alm_accounts")
    mocked_jira.post(TOKEN_URL, json=token_answer(2))
    mocked_jira.post(TOKEN_URL, status=500)  # reached Jira: reported, not retried
    mocked_jira.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "revoked"})
    outcomes = [services.refresh_account(account_id=connected_account.pk, actor="test").outcome.value
                for _ in range(3)]
    assert outcomes == ["refreshed", "failed", "needs re-authorization"]

    lines = [r for r in caplog.records if r.getMessage().startswith("Token refresh of ")]
    assert [(r.levelname, r.outcome) for r in lines] == [
        ("INFO", "refreshed"), ("WARNING", "failed"), ("ERROR", "needs re-authorization")]
    for record in lines:
        assert (record.account_id, record.grant_id, record.grant_kind) == (
            connected_account.pk, connected_account.pk, "account")
        assert f"ALM account {connected_account.pk} (Jira - Core Banking)" in record.getMessage()
        formatted = JsonFormatter().format(record)
        for secret in (ACCESS_TOKEN, REFRESH_TOKEN, "ACCESSTOKEN-2", "REFRESHTOKEN-2", "CLIENTSECRET"):
            assert secret not in formatted


def test_an_unexpected_error_mails_admins_without_the_callbacks_secrets(admin_client, account, settings, monkeypatch):
    """LOGGING names the `django` logger: Django's error mail handler must still be on it."""
    settings.DEBUG = False
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.SERVER_EMAIL = "kendis@example.com"
    admin_client.raise_request_exception = False
    start = admin_client.post(reverse("admin:alm_accounts_almaccount_change", args=[account.pk]), {
        "alm_type": account.alm_type, "name": account.name, "authentication": account.authentication,
        "base_url": account.base_url, "client_id": account.client_id, "client_secret": "", "scope": "ADMIN",
        "_get_auth_token": "Get Auth Token"})
    state = dict(part.split("=", 1) for part in urlsplit(start["Location"]).query.split("&"))["state"]
    verifier = PendingAuthorization.objects.get(account=account).code_verifier

    def exchange_that_breaks(self, **arguments):
        raise RuntimeError("an unexpected failure in the Jira client")

    monkeypatch.setattr(JiraClient, "exchange_code", exchange_that_breaks)
    mail.outbox.clear()
    response = admin_client.get(urlsplit(account.callback_url).path, {"code": CODE, "state": state})

    assert response.status_code == 500
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["ops@example.com"] and sent.from_email == "kendis@example.com"
    assert sent.subject.startswith("[kendis-integration] ERROR")
    assert "Internal Server Error: /oauth/jira/callback/" in sent.subject
    assert "an unexpected failure in the Jira client" in sent.body
    on_the_wire = sent.message().as_string()
    for secret in (CODE, state, verifier, "CLIENTSECRET"):
        assert secret not in on_the_wire


# Secrets of a deployment, each distinctive so that the mails can be searched for it.
DEPLOYMENT_SECRETS = {
    "DATABASE_URL": "DBPASSWORD-MailCanary-61d0",
    "JIRA_PROXY_URL": "PROXYPASSWORD-MailCanary-2b7e",
    "EMAIL_URL": "SMTPPASSWORD-MailCanary-9c44",
    "ALERT_WEBHOOK_URL": "WEBHOOKPATH-MailCanary-0f3a",
    "ALERT_WEBHOOK_SECRET": "WEBHOOKSECRET-MailCanary-77e1",
    "ATLASSIAN_CLIENT_SECRET": "ATLASSIANSECRET-MailCanary-4d2c",
    "METRICS_TOKEN": "METRICSTOKEN-MailCanary-5a8b-0123456789",
}


def mail_texts(raw: str) -> str:
    """A mail as sent, and each of its parts decoded (quoted-printable or base64 would hide a secret from a
    search of the raw text)."""
    message = email.message_from_string(raw, policy=email.policy.default)
    parts = [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
    return "\n".join([raw, str(message["Subject"]), *parts])


def test_error_mails_of_a_gunicorn_worker_carry_no_deployment_secret_nor_the_callbacks_code(production_env,
                                                                                          tmp_path):
    """The database is gone while people browse: every request gives a 500 and an error mail to ADMINS, sent over
    SMTP by the gunicorn worker (which sets RAW_URI, unlike the test client). (A refused connection rather than a
    silent one: the report is the same, and Django's report asks the database again for each query set it shows.)"""
    canary = DEPLOYMENT_SECRETS
    session_cookie = "sessionkeyMailCanary0123456789ab"
    csrf = "CsrfMailCanary0123456789abcdefgh"  # 32 characters: Django takes it unmasked
    code_of = {"dc": "DCCODE-MailCanary-11", "cloud": "CLOUDCODE-MailCanary-22", "page": "PAGECODE-MailCanary-33",
               "post": "POSTCODE-MailCanary-44"}
    state_of = {key: value.replace("CODE", "STATE") for key, value in code_of.items()}
    db_port = free_port()  # nothing listens there
    with SMTPSink() as smtp:
        env = {
            **production_env,
            "DATABASE_URL": f"postgres://kendis:{canary['DATABASE_URL']}@127.0.0.1:{db_port}/kendis",
            "EMAIL_URL": f"smtp://mailer:{canary['EMAIL_URL']}@127.0.0.1:{smtp.port}",
            "ADMINS": "Ops <ops@example.com>",
            "ALERT_WEBHOOK_URL": f"https://hooks.slack.example/services/T0/B0/{canary['ALERT_WEBHOOK_URL']}",
            "ALERT_WEBHOOK_SECRET": canary["ALERT_WEBHOOK_SECRET"],
            "JIRA_PROXY_URL": f"http://proxyuser:{canary['JIRA_PROXY_URL']}@proxy.example.com:3128",
            "ATLASSIAN_CLIENT_ID": "deployment-cloud-client-id",
            "ATLASSIAN_CLIENT_SECRET": canary["ATLASSIAN_CLIENT_SECRET"],
            "METRICS_TOKEN": canary["METRICS_TOKEN"],
        }
        collected = run(env, "manage.py", "collectstatic", "--noinput")
        assert collected.returncode == 0, collected.stderr[-3000:]
        with gunicorn(env, tmp_path / "gunicorn.log") as (base, session):
            session.cookies.set("sessionid", session_cookie)
            smtp.messages.clear()  # the start-up probe's
            answers = [
                session.get(f"{base}{CALLBACK_PATH}?code={code_of['dc']}&state={state_of['dc']}", headers={
                    "Referer": f"{PUBLIC}{CALLBACK_PATH}?code={code_of['dc']}&state={state_of['dc']}"}),
                session.get(f"{base}/oauth/atlassian/callback/?code={code_of['cloud']}&state={state_of['cloud']}",
                            headers={"Referer": f"https://auth.atlassian.com/authorize?state={state_of['cloud']}"}),
                session.get(f"{base}/admin/?code={code_of['page']}&state={state_of['page']}"),
                session.post(f"{base}/admin/logout/", cookies={"csrftoken": csrf}, headers={
                    "Host": "kendis.example.com", "Origin": PUBLIC}, data={
                    "csrfmiddlewaretoken": csrf, "code": code_of["post"], "state": state_of["post"]}),
            ]
        assert [answer.status_code for answer in answers] == [500] * 4, [a.text[:300] for a in answers]
        mails = [mail_texts(raw) for raw in smtp.messages]

    assert smtp.logins  # sent with the SMTP login of EMAIL_URL, as in production
    subjects = [re.search(r"Internal Server Error: (\S+)", text).group(1) for text in mails]
    assert sorted(set(subjects)) == sorted({CALLBACK_PATH, "/oauth/atlassian/callback/", "/admin/", "/admin/logout/"})
    leaked = {secret for text in mails for secret in [*canary.values(), *code_of.values(), *state_of.values(),
                                                      session_cookie, csrf] if secret in text}
    assert leaked == set(), sorted(leaked)
    for text in mails:
        # Still a useful report: what failed, where, and the settings that are no secret.
        assert "OperationalError" in text and "RAW_URI" in text
        assert "PUBLIC_BASE_URL = 'https://kendis.example.com'" in text
        assert "DATABASE_URL = '********************'" in text
