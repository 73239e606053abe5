"""Real servers and a real browser for the end-to-end tests.

The app runs as `manage.py runserver` on a free port with its own SQLite file,
the Jira sandbox runs beside it (fixtures from tests/sandbox/conftest.py), and
Playwright drives Debian's Chromium headless. Without Chromium these tests
skip locally; with CI=true they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.doubles.servers import free_port, running_server
from tests.sandbox.conftest import jira_sandbox_factory, jira_sandbox_server  # noqa: F401 - fixtures

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ADMIN_USERNAME = "kendis-admin"
ADMIN_PASSWORD = "e2e-" + secrets.token_urlsafe(12)
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
# Flags that keep Chromium from calling home on a machine without internet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.e2e


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


@dataclass
class App:
    url: str
    env: dict
    log_path: Path

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=self.env,
                                capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}{result.stderr}")
        return result


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """kendis-integration served by runserver, as `make run` would, on a fresh SQLite database."""
    with start_app(tmp_path_factory.mktemp("kendis_app")) as app:
        yield app


@contextlib.contextmanager
def start_app(directory: Path, *, port: int | None = None, env: dict | None = None):
    """An app like app_server's in `directory` (its own SQLite file and log), stopped when the block ends.

    `env` adds settings (e.g. ATLASSIAN_* pointing at a sandbox). Pass `port` when another server must know the
    app's URL before the app starts (the sandbox's registered Jira Cloud callback URL).
    """
    extra = dict(env or {})
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "kendis_integration.settings",
        "ENV_FILE": "",
        "DEBUG": "true",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "FIELD_ENCRYPTION_KEY": "n8kL0dTb8K3xQ5Nf4o9hZ2Yp6Wq1Rj7Vc0Sa3Ue5Gm8=",
        "PUBLIC_BASE_URL": url,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": f"sqlite:///{directory / 'e2e.sqlite3'}",
        "DJANGO_SUPERUSER_USERNAME": ADMIN_USERNAME,
        "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
        "PYTHONUNBUFFERED": "1",
        **extra,
    })
    app = App(url=url, env=env, log_path=directory / "server.log")
    app.manage("migrate", "--noinput", "-v", "0")
    app.manage("ensure_admin")
    command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    with running_server(command, ready_url=url + "/admin/login/", log_path=app.log_path, cwd=REPO_ROOT, env=env):
        yield app


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + ": browser tests must run in CI.")
        pytest.skip(message)
    # Playwright's sync API runs an event loop in this thread; the tests use no ORM.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_server):
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot(request):
    """Save a step's screenshot: into docs/screenshots with UPDATE_SCREENSHOTS=1, else a temp folder."""
    target = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else Path(
        request.getfixturevalue("tmp_path"))

    def take(page, name):
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return take


# --- What an administrator and a person click, shared by the browser tests ---


def log_in_to_app(page, app):
    page.goto(app.url + "/admin/")
    page.get_by_label("Username").fill(ADMIN_USERNAME)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="ALM Accounts").first).to_be_visible()


def log_in_to_sandbox(page, sandbox):
    page.goto(sandbox.url + "/admin/")
    page.get_by_label("Username").fill(sandbox.admin_username)
    page.get_by_label("Password").fill(sandbox.admin_password)
    page.get_by_role("button", name="Log in").click()


def open_accounts_list(page, app):
    page.goto(app.url + "/admin/")
    page.get_by_role("link", name="ALM Accounts").first.click()


def open_add_form(page, app):
    open_accounts_list(page, app)
    page.get_by_role("link", name=re.compile("Add ALM Account", re.I)).click()


def fill_account(page, *, name, base_url):
    page.get_by_label("ALM Type").select_option(label="Atlassian JIRA")
    page.get_by_label("Account Name").fill(name)
    page.get_by_label("Jira base URL").fill(base_url)


def add_connected_flow_account(page, app, sandbox, *, name, client_secret=None, permission="ADMIN"):
    """Add an account whose link exists in the sandbox; stop on the consent page (or wherever Jira sends us)."""
    log_in_to_app(page, app)
    open_add_form(page, app)
    fill_account(page, name=name, base_url=sandbox.url)
    callback_url = page.locator("#callback-url").input_value()
    client_id, secret = sandbox.create_link(name, callback_url, permission)
    page.get_by_label("Client ID:", exact=True).fill(client_id)
    page.get_by_label("Client Secret:", exact=True).fill(client_secret or secret)
    page.get_by_role("button", name="Save and get auth token").click()
    # Jira asks its own user to log in before the consent screen.
    page.get_by_label("Username").fill(sandbox.admin_username)
    page.get_by_label("Password").fill(sandbox.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#consent-form")).to_be_visible()
    return callback_url


def create_staff_user_without_alm_permissions(app, username, password):
    app.manage("shell", "-c", (
        "from django.contrib.auth.models import User; "
        f"User.objects.create_user({username!r}, password={password!r}, is_staff=True)"
    ))


def row_of(page, account):
    return page.locator(f'tr.alm-my-credential[data-account="{account}"]')
