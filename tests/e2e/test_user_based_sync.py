"""User-based sync in a real browser: a second person connects their own Jira account under My ALM Credentials,
and what the product then creates in Jira is reported by that person's Jira user.

App and Jira sandbox run as real servers (tests/e2e/conftest.py). The admin connects the account as in the
walk-through; the second person shares the browser, so Jira's consent page first shows the admin's Jira user
and they switch with its "Log out" link, as they would in Jira.

The app is a private one (fresh database): My ALM Credentials lists every ready account, and the README's
screenshot must show this test's accounts only, whichever other browser tests ran before.
"""

from __future__ import annotations

import json
import re
import secrets
import sys

import pytest
from playwright.sync_api import expect

from tests.doubles.servers import free_port, running_server
from tests.e2e.conftest import (
    REPO_ROOT,
    App,
    add_connected_flow_account,
    create_staff_user_without_alm_permissions,
    row_of,
)

ACCOUNT = "Jira - Core Banking"
OTHER_ACCOUNT = "Jira - Payments"  # ready, its policy refuses people who have not connected
PERSON = "bea"
PERSON_PASSWORD = "e2e-" + secrets.token_urlsafe(12)
USER2_DISPLAY_NAME = "Jira Sandbox User Two"
ADMIN_DISPLAY_NAME = "Jira Sandbox Admin"


@pytest.fixture(scope="module")
def own_app(tmp_path_factory, app_server):
    """A second app like conftest's app_server (same settings), on its own port and fresh SQLite database."""
    directory = tmp_path_factory.mktemp("kendis_app_user_sync")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**app_server.env, "PUBLIC_BASE_URL": url, "SECRET_KEY": secrets.token_urlsafe(40),
           "DATABASE_URL": f"sqlite:///{directory / 'e2e.sqlite3'}"}
    app = App(url=url, env=env, log_path=directory / "server.log")
    app.manage("migrate", "--noinput", "-v", "0")
    app.manage("ensure_admin")
    command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    with running_server(command, ready_url=url + "/admin/login/", log_path=app.log_path, cwd=REPO_ROOT, env=env):
        yield app


@pytest.fixture
def own_page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def add_ready_account_that_refuses_the_unconnected(app, base_url):
    app.manage("shell", "-c", (
        "from alm_accounts.models import ALMAccount; "
        f"ALMAccount.objects.create(name={OTHER_ACCOUNT!r}, base_url={base_url!r}, client_id='payments-link', "
        "client_secret='payments-secret', unconnected_users=ALMAccount.UnconnectedUsers.REFUSE)"
    ))


def jira_call(app, *args):
    """`manage.py jira_call ...` against the app's database: Jira's JSON answer."""
    result = app.manage("jira_call", *args)
    return json.loads(result.stdout)


def create_demo_issue(app, summary, *as_user):
    fields = {"project": {"key": "DEMO"}, "summary": summary, "issuetype": {"name": "Task"}}
    return jira_call(app, ACCOUNT, "POST", "/rest/api/2/issue", *as_user, "--data", json.dumps({"fields": fields}))


def reporter_of(app, key):
    issue = jira_call(app, ACCOUNT, "GET", f"/rest/api/2/issue/{key}")
    return issue["fields"]["reporter"]["name"]


def test_a_person_connects_their_own_jira_account_and_jira_records_them(own_page, own_app, jira_sandbox_server,
                                                                          screenshot):
    page, app, sandbox = own_page, own_app, jira_sandbox_server

    # The admin connects the account (the walk-through's steps); the browser stays logged in to Jira as admin.
    add_connected_flow_account(page, app, sandbox, name=ACCOUNT)
    page.get_by_role("button", name="Allow").click()
    expect(page.locator(".messagelist")).to_contain_text(f"Connected to Jira as {ADMIN_DISPLAY_NAME}")
    page.get_by_role("button", name="Log out").click()

    # A second staff user, with no permission on ALM accounts, logs in to the app.
    create_staff_user_without_alm_permissions(app, PERSON, PERSON_PASSWORD)
    add_ready_account_that_refuses_the_unconnected(app, sandbox.url)
    page.goto(app.url + "/admin/")
    page.get_by_label("Username").fill(PERSON)
    page.get_by_label("Password").fill(PERSON_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#my-alm-credentials-module")).to_be_visible()  # the index's box
    expect(page.get_by_role("link", name="ALM Accounts")).to_have_count(0)

    # My ALM Credentials, from the top bar.
    page.locator("#user-tools").get_by_role("link", name="My ALM Credentials").click()
    expect(page.locator("h1")).to_have_text("My ALM Credentials")
    row = row_of(page, ACCOUNT)
    expect(row).to_contain_text("Not connected")
    expect(row).to_contain_text("The product acts as the account's connection until you connect.")
    expect(row_of(page, OTHER_ACCOUNT)).to_contain_text("You must connect to use this account.")
    row.get_by_role("button", name="Connect my Jira account").click()

    # Jira's consent page shows who is logged in to Jira: still the admin. Not you? Log out.
    expect(page.locator("#consent-form")).to_be_visible()
    expect(page.locator("#current-user")).to_have_text(ADMIN_DISPLAY_NAME)
    page.get_by_role("link", name="Log out").click()
    page.get_by_label("Username").fill(sandbox.user2_username)
    page.get_by_label("Password").fill(sandbox.user2_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#current-user")).to_have_text(USER2_DISPLAY_NAME)
    page.get_by_role("button", name="Allow").click()

    # Back on My ALM Credentials, connected as the second Jira user.
    expect(page.locator(".messagelist")).to_contain_text(f"Connected to Jira as {USER2_DISPLAY_NAME} (ADMIN)")
    assert re.search(r"/admin/my-alm-credentials/$", page.url), page.url
    row = row_of(page, ACCOUNT)
    expect(row.locator(".alm-status")).to_have_text(f"Connected as {USER2_DISPLAY_NAME}")
    expect(row.get_by_role("button", name="Reconnect")).to_be_visible()
    expect(row_of(page, OTHER_ACCOUNT).locator(".alm-status")).to_have_text("Not connected")
    screenshot(page, "7-my-alm-credentials")

    row.get_by_role("button", name="Test").click()
    expect(page.locator(".messagelist")).to_contain_text(
        f"{ACCOUNT}: Connected to Jira 9.12.2 as {USER2_DISPLAY_NAME}.")

    # What the product creates for this person is reported in Jira by their Jira user; the account's own
    # connection still acts as the admin.
    mine = create_demo_issue(app, "Created for bea", "--as", PERSON)
    by_account = create_demo_issue(app, "Created by the account's connection")
    assert reporter_of(app, mine["key"]) == sandbox.user2_username == "jira-user2"
    assert reporter_of(app, by_account["key"]) == sandbox.admin_username
