"""The first hour of a Jira administrator, in a real browser: what goes wrong with a new account and what the
screens say about it (issue 19).

App and Jira sandbox run as real servers (tests/e2e/conftest.py, tests/sandbox/conftest.py); the sandbox is a
plain-http Jira Data Center at http://127.0.0.1:<port> with no context path.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_PASSWORD, ADMIN_USERNAME


def log_in(page, app):
    page.goto(app.url + "/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(ADMIN_USERNAME)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="ALM Accounts").first).to_be_visible()


def open_add_form(page, app):
    page.goto(app.url + "/admin/alm_accounts/almaccount/add/")


def base_url_error(page):
    return page.locator(".form-row.field-base_url .errorlist")


def try_base_url(page, base_url, *, client_id, client_secret):
    """Type the account's fields with this base URL and press Save and get auth token."""
    page.get_by_label("ALM Type").select_option(label="Atlassian JIRA")
    page.get_by_label("Account Name").fill("Jira - First hour")
    page.get_by_label("Jira base URL").fill(base_url)
    page.get_by_label("Client ID").fill(client_id)
    page.get_by_label("Client Secret").fill(client_secret)  # never shown again after an error
    page.get_by_role("button", name="Save and get auth token").click()


def test_a_wrong_base_url_is_told_on_the_form_with_what_to_type_and_a_pasted_page_is_cut(
        page, app_server, jira_sandbox_server, screenshot):
    app, sandbox = app_server, jira_sandbox_server
    port = urlsplit(sandbox.url).port
    log_in(page, app)
    open_add_form(page, app)
    client_id, client_secret = sandbox.create_link("First hour", page.locator("#callback-url").input_value())
    fields = {"client_id": client_id, "client_secret": client_secret}

    # https against a Jira served over http: not ERR_SSL_PROTOCOL_ERROR, but the form says to type http://.
    try_base_url(page, f"https://127.0.0.1:{port}", **fields)
    expect(base_url_error(page)).to_contain_text(f"https://127.0.0.1:{port} does not speak https")
    expect(base_url_error(page)).to_contain_text(f"Type http://127.0.0.1:{port} instead.")
    expect(page).to_have_title(re.compile("^Error: Add ALM Account"))
    screenshot(page, "first-hour-1-base-url-https-against-http")

    # A wrong context path: not Jira's 404 page, but where Jira answers.
    try_base_url(page, f"{sandbox.url}/jira", **fields)
    expect(base_url_error(page)).to_contain_text(f"No Jira at {sandbox.url}/jira (HTTP 404)")
    expect(base_url_error(page)).to_contain_text(f"Type {sandbox.url} instead.")

    # A typo in the host: not "This site can't be reached".
    try_base_url(page, f"http://jira-sandbox.invalid:{port}", **fields)
    expect(base_url_error(page)).to_contain_text("The host jira-sandbox.invalid was not found")

    # The address of Jira's dashboard, pasted from the browser: cut to the base URL, said, and on to consent.
    try_base_url(page, f"{sandbox.url}/secure/Dashboard.jspa", **fields)
    page.get_by_label("Username").fill(sandbox.admin_username)
    page.get_by_label("Password").fill(sandbox.admin_password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Allow").click()
    messages = page.locator(".messagelist")
    expect(messages).to_contain_text(f"The Jira base URL was saved as {sandbox.url}: the page part of the pasted "
                                     "address (/secure/Dashboard.jspa) is not part of it.")
    expect(messages).to_contain_text("Connected to Jira as Jira Sandbox Admin")
    expect(page.get_by_label("Jira base URL")).to_have_value(sandbox.url)


def test_after_deny_the_last_error_is_the_denial_not_an_earlier_failure(page, app_server, jira_sandbox_server):
    app, sandbox = app_server, jira_sandbox_server
    log_in(page, app)
    open_add_form(page, app)
    client_id, _secret = sandbox.create_link("First hour - deny", page.locator("#callback-url").input_value())

    # A mistyped Client Secret: Jira answers invalid_client after consent.
    try_base_url(page, sandbox.url, client_id=client_id, client_secret="not-the-secret-of-this-link")
    page.get_by_label("Username").fill(sandbox.admin_username)
    page.get_by_label("Password").fill(sandbox.admin_password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Allow").click()
    last_error = page.locator(".form-row.field-last_error .readonly")
    expect(last_error).to_contain_text("invalid_client")

    # Again, and Deny on Jira's consent page: the Last error is now the denial.
    page.get_by_role("button", name="Get Auth Token").click()
    page.get_by_role("button", name="Deny").click()
    expect(page.locator(".messagelist")).to_contain_text("Access was denied on Jira's consent screen")
    expect(last_error).to_contain_text("Access was denied on Jira's consent screen")
    expect(last_error).not_to_contain_text("invalid_client")
