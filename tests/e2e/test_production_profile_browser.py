"""The production profile, started the way operators start it, checked in a real browser (issue 13).

`honcho start -f Procfile` runs both processes of the Procfile with DEBUG=false
on a fresh PostgreSQL database: `web` (gunicorn with deploy/gunicorn.conf.py)
and `refresher` (`refresh_tokens --loop`). In front of gunicorn runs nginx with
deploy/nginx/kendis-integration.conf (issue 19), only its host values replaced:
https for the browser (a throwaway CA), plain HTTP to gunicorn with its own
`X-Forwarded-Proto: https`, which gunicorn believes because it comes from
127.0.0.1 (FORWARDED_ALLOW_IPS' default); the static files collectstatic
gathered straight from disk, compressed and cached for good; both OAuth
callbacks logged without their query strings; plain http sent to https. A fake
Jira answers the refresher, and holds its first token request until the test
lets it go.

Chromium checks what an operator and a load balancer see: /readyz is 503 while
no refresher pass has finished and 200 after the first one; /healthz answers
over plain HTTP; the admin login page is styled by its hashed, compressed CSS;
an administrator logs in and copies the callback URL of the add form; /metrics
refuses a scraper without the token and gives the numbers with it. Then Ctrl-C
(SIGINT to honcho) stops both processes cleanly: exit code 0 each, the
refresher's stop message, no traceback, and no secret anywhere in the output.

PostgreSQL, Chromium and nginx (scripts/ensure_nginx.sh) only: without them
this test skips locally; with CI=true it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import trustme
from cryptography.fernet import Fernet
from django.conf import settings
from playwright.sync_api import expect
from prometheus_client.parser import text_string_to_metric_families

from tests.doubles.fake_jira import FakeJira
from tests.doubles.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCFILE = REPO_ROOT / "Procfile"
# As `make run` does: honcho would otherwise read ./.env and put its values *over* the real environment.
HONCHO = ["-m", "honcho", "start", "--no-colour", "-e", "/dev/null", "-f", str(PROCFILE)]
ADMIN_USERNAME, ADMIN_PASSWORD = "ops-admin", "Profile-" + secrets.token_urlsafe(12)
CLIENT_ID, CLIENT_SECRET = "profile-client", "CLIENTSECRET-profile-" + secrets.token_hex(6)
GRANT = "a1"
WAIT_SECONDS = 60  # every wait below ends as soon as its condition holds; this is only reached when broken
HASHED_STATIC = re.compile(r"/static/[\w/.-]+\.[0-9a-f]{12}\.(css|js)$")


# --------------------------------------------------------------------------
# PostgreSQL: a database of its own on the test server, dropped afterwards
# --------------------------------------------------------------------------


@pytest.fixture
def production_database_url():
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql":
        message = "The production profile runs on PostgreSQL: DATABASE_URL=postgres://... is not set."
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    import psycopg

    server = {"host": database["HOST"] or "127.0.0.1", "port": database["PORT"] or 5432,
              "user": database["USER"], "password": database["PASSWORD"]}
    name = f"kendis_profile_{secrets.token_hex(4)}"

    def maintenance():
        # As Django does for its test database: the `postgres` database, else the one DATABASE_URL names.
        try:
            return psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=10, **server)
        except psycopg.OperationalError:
            return psycopg.connect(dbname=database["NAME"], autocommit=True, connect_timeout=10, **server)

    with maintenance() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://{server['user']}:{server['password']}@{server['host']}:{server['port']}/{name}"
    finally:
        with maintenance() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------
# nginx in front of gunicorn: deploy/nginx/kendis-integration.conf itself
# --------------------------------------------------------------------------

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_SITE = REPO_ROOT / "deploy" / "nginx" / "kendis-integration.conf"


class Nginx:
    """deploy/'s site file with only the host's values replaced (the ones its header lists), in a minimal nginx.conf.

    Listens on 127.0.0.1 (https on one free port, plain http on another) and runs in the foreground; its access
    and error logs are files of this test.
    """

    def __init__(self, directory: Path, *, upstream_port: int, static_root: Path, ca: trustme.CA):
        if not os.access(NGINX, os.X_OK):
            message = "nginx is not installed (bash scripts/ensure_nginx.sh, or apt-get install nginx)."
            if os.environ.get("CI") == "true":
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        self.directory = directory
        directory.mkdir()
        self.https_port, self.http_port = free_port(), free_port()
        certificate = ca.issue_cert("127.0.0.1")
        certificate.cert_chain_pems[0].write_to_path(directory / "fullchain.pem")
        for blob in certificate.cert_chain_pems[1:]:
            blob.write_to_path(directory / "fullchain.pem", append=True)
        certificate.private_key_pem.write_to_path(directory / "key.pem")
        self.ca_path = directory / "ca.pem"
        ca.cert_pem.write_to_path(self.ca_path)
        site = NGINX_SITE.read_text()
        replacements = [
            ("listen 443 ssl;", f"listen 127.0.0.1:{self.https_port} ssl;"),
            ("listen [::]:443 ssl;", ""),
            ("listen 80;", f"listen 127.0.0.1:{self.http_port};"),
            ("listen [::]:80;", ""),
            ("server_name kendis.example.com;", "server_name 127.0.0.1;"),
            ("/etc/ssl/kendis/kendis.example.com.fullchain.pem", str(directory / "fullchain.pem")),
            ("/etc/ssl/kendis/kendis.example.com.key", str(directory / "key.pem")),
            ("/srv/kendis-integration/staticfiles/", f"{static_root}/"),
            ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
            ("/var/log/nginx/", f"{directory}/"),
        ]
        for value, replacement in replacements:
            assert value in site, f"{NGINX_SITE.name} no longer holds {value!r}: update this test and its header"
            site = site.replace(value, replacement)
        (directory / "site.conf").write_text(site)
        temp = "\n".join(f"    {kind}_temp_path {directory}/{kind};" for kind in (
            "client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # As root, nginx's workers would run as nobody, who cannot read this test's private temporary folder.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (directory / "nginx.conf").write_text(
            f"{user}worker_processes 1;\npid {directory}/nginx.pid;\nerror_log {directory}/main-error.log;\n"
            f"events {{}}\nhttp {{\n    include /etc/nginx/mime.types;\n{temp}\n"
            f"    include {directory}/site.conf;\n}}\n")
        self.url = f"https://127.0.0.1:{self.https_port}"
        self.plain_url = f"http://127.0.0.1:{self.http_port}"
        checked = subprocess.run([NGINX, "-t", "-p", str(directory), "-e", str(directory / "main-error.log"),
                                  "-c", str(directory / "nginx.conf")], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen(
            [NGINX, "-p", str(directory), "-e", str(directory / "main-error.log"), "-c", str(directory / "nginx.conf"),
             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while answers(self.plain_url + "/") is None:
            assert self.process.poll() is None and time.monotonic() < deadline, self.logs()
            time.sleep(0.1)

    def access_log(self) -> str:
        path = self.directory / "kendis-integration.access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in sorted(self.directory.glob("*.log")))

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()  # nginx's fast shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


# --------------------------------------------------------------------------
# The profile: honcho and its two processes
# --------------------------------------------------------------------------


@dataclass
class Profile:
    env: dict
    log_path: Path
    web_url: str  # gunicorn itself, plain HTTP (where a load balancer's probe goes)
    public_url: str  # the proxy: what people open
    process: subprocess.Popen | None = None

    def manage(self, *args: str, extra_env: dict | None = None) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                env={**self.env, **(extra_env or {})}, timeout=180)
        assert result.returncode == 0, (f"manage.py {args[0]} exited {result.returncode}:\n"
                                        f"{result.stdout}{result.stderr}")
        return result.stdout

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def lines_of(self, process: str) -> list[str]:
        """What one process of the Procfile printed (honcho prefixes each line with its name)."""
        prefix = re.compile(rf"^\S+ {re.escape(process)}\s*\| ?")
        return [prefix.sub("", line) for line in self.output().splitlines() if prefix.match(line)]

    def started_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"started \(pid=(\d+)\)", self.output())]

    def wait_for(self, condition, what: str, timeout: float = WAIT_SECONDS):
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"The profile ended (honcho exit {self.process.returncode}) before {what}. Its output:\n"
                            f"{self.output()[-6000:]}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"Not within {timeout:g} s: {what}. The profile's output:\n{self.output()[-6000:]}",
                            pytrace=False)
            time.sleep(0.2)

    def kill_everything(self):
        """Whatever still runs: honcho starts each process in a session of its own, so each group is killed."""
        for pid in self.started_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def answers(url: str, **kwargs) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5, allow_redirects=False, **kwargs)
    except requests.RequestException:
        return None


@pytest.fixture
def held_jira():
    """The fake Jira; its token answers wait for `gate` (at most 45 s, under the 60 s refresh deadline below)."""
    with FakeJira() as fake:
        gate = threading.Event()
        answer = fake.token

        def held(form):
            gate.wait(45)
            return answer(form)

        fake.token = held
        yield fake, gate
        gate.set()


def test_production_profile_in_chromium_and_clean_stop(browser, production_database_url, held_jira, tmp_path):
    fake, gate = held_jira
    procfile = PROCFILE.read_text()
    assert re.search(r"^web:.*\bgunicorn\b.*-c deploy/gunicorn\.conf\.py", procfile, re.M), (
        f"The Procfile's web process is not gunicorn with deploy/gunicorn.conf.py:\n{procfile}")
    assert re.search(r"^refresher:.*refresh_tokens --loop", procfile, re.M), procfile

    web_port = free_port()
    proxy = Nginx(tmp_path / "nginx", upstream_port=web_port, static_root=tmp_path / "staticfiles", ca=trustme.CA())
    metrics_token = secrets.token_urlsafe(32)
    env = {
        # Nothing of the test run's own environment (its settings module sets DEBUG and keys): only these.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "ENV_FILE": "",
        "DJANGO_SETTINGS_MODULE": "kendis_integration.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "PUBLIC_BASE_URL": proxy.url,
        "DATABASE_URL": production_database_url,
        "STATIC_ROOT": str(tmp_path / "staticfiles"),
        "METRICS_TOKEN": metrics_token,
        "REFRESHER_INTERVAL_SECONDS": "30",
        "GUNICORN_BIND": f"127.0.0.1:{web_port}",
        "GUNICORN_WORKERS": "2",
        # The first refresh waits at the fake Jira until the test has seen /readyz say "not ready".
        "JIRA_REFRESH_DEADLINE": "60",
        "JIRA_READ_TIMEOUT": "60",
    }
    profile = Profile(env=env, log_path=tmp_path / "profile.log", web_url=f"http://127.0.0.1:{web_port}",
                      public_url=proxy.url)
    secret_values = [env["SECRET_KEY"], env["FIELD_ENCRYPTION_KEY"], metrics_token, ADMIN_PASSWORD, CLIENT_SECRET,
                     f"AT-{GRANT}-", f"RT-{GRANT}-"]
    try:
        # The deploy steps of the README: static files, the schema, an administrator; then one connected Jira
        # account whose access token expires now, so that the refresher's first pass has work to do.
        profile.manage("collectstatic", "--noinput", "-v", "0")
        profile.manage("migrate", "--noinput", "-v", "0")
        profile.manage("createsuperuser", "--noinput", extra_env={
            "DJANGO_SUPERUSER_USERNAME": ADMIN_USERNAME, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
            "DJANGO_SUPERUSER_EMAIL": "ops@example.com"})
        access, refresh = f"AT-{GRANT}-0", f"RT-{GRANT}-0"
        callback_url = profile.manage("shell", "-c", (
            "from django.utils import timezone; from alm_accounts.models import ALMAccount; "
            f"a = ALMAccount.objects.create(name='Jira Core Banking', base_url={fake.base_url!r}, "
            f"client_id={CLIENT_ID!r}, client_secret={CLIENT_SECRET!r}, client_secret_base_url={fake.base_url!r}, "
            "status=ALMAccount.Status.CONNECTED, token_scope='ADMIN', token_expires_at=timezone.now(), "
            # In use (the product asked for its token just now): refreshed before its access token expires.
            f"connected_at=timezone.now(), last_used_at=timezone.now(), access_token={access!r}, "
            f"refresh_token={refresh!r}); "
            "print(a.callback_url)")).strip().splitlines()[-1]
        assert fake.add_grant(GRANT, redirect_uri=callback_url, client_id=CLIENT_ID,
                              client_secret=CLIENT_SECRET) == (access, refresh)

        with open(profile.log_path, "w") as log:
            profile.process = subprocess.Popen([sys.executable, *HONCHO], cwd=REPO_ROOT, env=env, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True)
        profile.wait_for(lambda: fake.token_requests_started.acquire(timeout=0.1),
                         "the refresher's first pass asked Jira for a new token")
        profile.wait_for(lambda: answers(profile.web_url + "/healthz"), "gunicorn answers on GUNICORN_BIND")

        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1200, "height": 860})
        context.set_default_timeout(15_000)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=proxy.url)
        page = context.new_page()

        # --- /readyz: not ready while no refresher pass has finished (the account depends on it), then ready ---
        response = page.goto(profile.web_url + "/readyz")
        assert response.status == 503, response.text()
        assert response.json()["status"] == "refresher stale"
        gate.set()
        profile.wait_for(lambda: (r := answers(profile.web_url + "/readyz")) is not None and r.status_code == 200,
                         "/readyz says ready after the refresher's first pass")
        response = page.goto(profile.web_url + "/readyz")
        assert response.status == 200
        ready = response.json()
        assert ready["status"] == "ok" and isinstance(ready["seconds_since_last_refresh_run"], int), ready
        assert fake.refreshes[GRANT] == 1, fake.rejected
        profile.wait_for(lambda: any("Summary: 1 refreshed" in line for line in profile.lines_of("refresher.1")),
                         "the refresher printed its pass summary")

        # --- /healthz over plain HTTP, no forwarded header: 200, while the same plain request to a page is sent
        # to https (SECURE_SSL_REDIRECT is on outside DEBUG) ---
        response = page.goto(profile.web_url + "/healthz")
        assert (response.status, page.locator("body").inner_text().strip()) == (200, "ok")
        plain = answers(profile.web_url + "/admin/login/")
        assert plain.status_code == 301 and plain.headers["Location"].startswith("https://"), plain.headers

        # --- the admin login page through the proxy, styled by whitenoise's hashed and compressed CSS ---
        static_responses = {}
        page.on("response", lambda r: static_responses.setdefault(r.url, r) if "/static/" in r.url else None)
        response = page.goto(proxy.url + "/admin/login/")
        assert response.status == 200
        assert "max-age" in response.headers.get("strict-transport-security", ""), "the answer did not count as https"
        stylesheets = page.eval_on_selector_all("link[rel=stylesheet]", "links => links.map(l => l.href)")
        assert stylesheets, page.content()
        for url in stylesheets:
            assert HASHED_STATIC.search(url), f"not a hashed static URL (collectstatic's manifest): {url}"
            css = static_responses.get(url)
            assert css is not None and css.status == 200, f"{url}: {css and css.status}"
            headers = css.all_headers()
            assert headers["content-type"].startswith("text/css"), headers
            assert headers.get("content-encoding") in ("gzip", "br"), f"{url} was not served compressed: {headers}"
            assert "immutable" in headers.get("cache-control", ""), headers
        style = page.evaluate("""() => ({
            headerBackground: getComputedStyle(document.querySelector('#header')).backgroundColor,
            headerColour: getComputedStyle(document.documentElement).getPropertyValue('--header-bg').trim(),
            rules: Array.from(document.styleSheets).map(sheet => sheet.cssRules.length),
        })""")
        assert style["headerColour"], f"the admin's CSS variables are not defined: {style}"
        assert style["headerBackground"] not in ("", "rgba(0, 0, 0, 0)", "transparent"), style
        assert all(style["rules"]), style

        # --- log in and copy the callback URL of the add form ---
        page.get_by_label("Username").fill(ADMIN_USERNAME)
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("link", name="ALM Accounts").first.click()
        page.get_by_role("link", name=re.compile("Add ALM Account", re.I)).click()
        page.get_by_label("ALM Type").select_option(label="Atlassian JIRA")
        page.get_by_label("Account Name").fill("Jira Payments")
        page.get_by_label("Jira base URL").fill("https://jira.example.com")
        page.get_by_role("button", name="Copy URL").click()
        expect(page.locator(".copy-url-status:visible")).to_have_text("Copied.")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == page.locator("#callback-url").input_value()
        assert copied.startswith(proxy.url + "/oauth/jira/callback/"), copied
        scripts = [url for url in static_responses if "copy_url" in url]
        assert scripts and all(HASHED_STATIC.search(url) and static_responses[url].status == 200 for url in scripts), (
            scripts)

        # --- /metrics: refused without the token (or with a wrong one), the numbers with it ---
        response = page.goto(proxy.url + "/metrics")
        assert response.status == 401 and response.headers["www-authenticate"].startswith("Bearer"), response.status
        assert "kendis_" not in page.content()
        scraper = context.new_page()
        scraper.set_extra_http_headers({"Authorization": "Bearer " + secrets.token_urlsafe(32)})
        assert scraper.goto(proxy.url + "/metrics").status == 401
        scraper.set_extra_http_headers({"Authorization": "Bearer " + metrics_token})
        response = scraper.goto(proxy.url + "/metrics")
        assert response.status == 200, response.text()
        samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                   for family in text_string_to_metric_families(response.text()) for sample in family.samples}
        assert samples[("kendis_grants", (("kind", "account"), ("status", "connected")))] == 1
        # Within the last hour (a second pass, with nothing due, may have finished by now on a slow machine).
        assert samples[("kendis_refresher_recent_grants", (("result", "refreshed"),))] == 1
        assert samples[("kendis_refresher_stale", ())] == 0
        # The refreshed token (Jira gave it 7200 s) is the earliest expiry now, not the one that expired at start.
        assert samples[("kendis_access_token_earliest_expiry_seconds", (("kind", "account"),))] > 3600
        # --- nginx: both OAuth callbacks reach the app, and its logs hold their paths without the query string ---
        code, state = "AUTHCODE-NginxCanary-" + secrets.token_hex(6), "STATE-NginxCanary-" + secrets.token_hex(6)
        jira_callback = urlsplit(copied).path
        for path in (jira_callback, "/oauth/atlassian/callback/"):
            response = page.goto(f"{proxy.url}{path}?code={code}&state={state}")
            assert response.status < 500, (path, response.status)
        nginx_log = proxy.access_log()
        assert f'"GET {jira_callback} HTTP/1.1"' in nginx_log, nginx_log[-3000:]
        assert '"GET /oauth/atlassian/callback/ HTTP/1.1"' in nginx_log, nginx_log[-3000:]
        assert code not in proxy.logs() and state not in proxy.logs(), "a callback's query string in nginx's logs"
        secret_values += [code, state]

        # --- nginx serves the static files itself (gunicorn never saw one), and sends plain http to https ---
        assert not [line for line in profile.lines_of("web.1") if "/static/" in line], profile.lines_of("web.1")
        assert re.search(r'"GET /static/admin/css/base\.[0-9a-f]{12}\.css HTTP/1\.1" 200', nginx_log), nginx_log
        redirect = answers(proxy.plain_url + "/admin/login/?next=/admin/")
        assert redirect.status_code == 301, redirect.status_code
        assert redirect.headers["Location"] == "https://127.0.0.1/admin/login/?next=/admin/", redirect.headers

        # --- the forwarded headers are nginx's, never the client's: a forged "http" still counts as https ---
        forged = requests.get(proxy.url + "/admin/login/", verify=str(proxy.ca_path), timeout=10, allow_redirects=False,
                              headers={"X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.example",
                                       "Forwarded": "proto=http;host=evil.example"})
        assert forged.status_code == 200, forged.status_code
        assert "max-age" in forged.headers.get("strict-transport-security", ""), forged.headers
        assert "evil.example" not in forged.text
        context.close()

        # --- Ctrl-C: honcho sends SIGTERM to both; each stops by itself, in time, with exit code 0 ---
        profile.process.send_signal(signal.SIGINT)
        try:
            honcho_exit = profile.process.wait(WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"The profile did not stop within {WAIT_SECONDS} s of SIGINT:\n{profile.output()[-6000:]}",
                        pytrace=False)
        output = profile.output()
        assert honcho_exit == 130, output[-6000:]  # honcho's own code after SIGINT, whatever its processes did
        # honcho runs each line with `sh -c`: without `exec` it sees (and signals) the shell, whose SIGTERM death
        # (rc=-15) hides how the process itself ended.
        assert "web.1 stopped (rc=0)" in output and "refresher.1 stopped (rc=0)" in output, (
            f"a process of the Procfile did not exit 0 (a line without `exec`?):\n{output[-6000:]}")
        assert "SIGKILL" not in output, output[-6000:]  # honcho kills what has not stopped 5 s after SIGTERM
        assert any("Shutting down: Master" in line for line in profile.lines_of("web.1")), output[-6000:]
        assert any(line.startswith("The refresher stopped (SIGTERM)") for line in profile.lines_of("refresher.1")), (
            output[-6000:])
        assert "Traceback" not in output, output
        leaked = [value for value in secret_values if value in output]
        assert not leaked, f"secrets in the profile's output: {[value[:6] + '…' for value in leaked]}"
        assert answers(profile.web_url + "/healthz") is None, "gunicorn still answers after the stop"
    finally:
        profile.kill_everything()
        proxy.stop()
