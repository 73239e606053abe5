"""The first hour of a Jira administrator, in a real browser: what goes wrong with a new account and what the
screens say about it (issue 19).

App and Jira sandbox run as real servers (tests/e2e/conftest.py, tests/sandbox/conftest.py); the sandbox is a
plain-http Jira Data Center at http://127.0.0.1:<port> with no context path. The app is this module's own.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, start_app


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """This module's own app: its half-made and pretend-connected accounts stay out of the shared app's refreshes."""
    with start_app(tmp_path_factory.mktemp("kendis_app_first_hour")) as app:
        yield app


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


def try_base_url(page, base_url, *, client_id, client_secret, name="Jira - First hour"):
    """Type the account's fields with this base URL and press Save and get auth token."""
    page.get_by_label("ALM Type").select_option(label="Atlassian JIRA")
    page.get_by_label("Account Name").fill(name)
    page.get_by_label("Jira base URL").fill(base_url)
    page.get_by_label("Client ID:", exact=True).fill(client_id)
    page.get_by_label("Client Secret:", exact=True).fill(client_secret)  # never shown again after an error
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
    try_base_url(page, sandbox.url, client_id=client_id, client_secret="not-the-secret-of-this-link",
                 name="Jira - First hour, denied")
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


def create_staff_user(app, username, password):
    """A person who may sign in and nothing else: what My ALM Credentials needs."""
    app.manage("shell", "-c", (
        "from django.contrib.auth.models import User; "
        f"User.objects.create_user({username!r}, password={password!r}, is_staff=True)"
    ))


def test_a_person_with_only_staff_status_sees_my_alm_credentials_on_one_line_and_no_refusal(
        browser, app_server, screenshot):
    app = app_server
    create_staff_user(app, "dora", "dora-pw-First-hour-1")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(app.url + "/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("dora")
    page.get_by_label("Password").fill("dora-pw-First-hour-1")
    page.get_by_role("button", name="Log in").click()

    box = page.locator("#my-alm-credentials-module")
    link = box.get_by_role("link", name="My ALM Credentials")
    expect(link).to_be_visible()
    size = link.bounding_box()
    line = float(link.evaluate("a => parseFloat(getComputedStyle(a).lineHeight) || 20"))
    assert size["height"] < 1.5 * line, f"the link wraps: {size}"  # one letter per line was ~20 lines high
    assert size["width"] > 100, size
    expect(page.get_by_text("You don’t have permission to view or edit anything.")).to_have_count(0)
    expect(page.get_by_text("You don't have permission to view or edit anything.")).to_have_count(0)
    expect(page.locator(".alm-only-my-credentials")).to_contain_text("My ALM Credentials is what you can use here")
    screenshot(page, "first-hour-2-index-staff-only")
    link.click()
    expect(page.locator("h1")).to_have_text("My ALM Credentials")
    context.close()


def test_the_account_form_speaks_of_the_chosen_provider_and_numbers_its_sections_in_order(page, app_server):
    app = app_server
    log_in(page, app)
    open_add_form(page, app)
    headings = [text.strip() for text in page.locator("fieldset.module > h2").all_inner_texts()]
    assert [h.split(".")[0] for h in headings[:3]] == ["I", "II", "III"], headings
    keep_open = page.get_by_text("Keep this screen open while you create the link in Jira")
    expect(keep_open).to_be_visible()
    client_id_help = page.locator(".form-row.field-client_id .help")
    client_secret_help = page.locator(".form-row.field-client_secret .help")
    expect(client_id_help).to_contain_text("incoming application link")

    page.get_by_label("Authentication").select_option(label="Jira Cloud — Use OAuth 2.0 (3LO)")
    expect(keep_open).to_have_count(0)
    for help_text in (client_id_help, client_secret_help):
        expect(help_text).not_to_contain_text("incoming application link")
        expect(help_text).to_contain_text("Atlassian app")
    expect(page.locator("fieldset.module").nth(1)).to_contain_text("nothing to create in Jira")


def test_a_connected_account_no_longer_says_keep_this_screen_open(page, app_server):
    app = app_server
    app.manage("shell", "-c", (
        "from django.utils import timezone; from alm_accounts.models import ALMAccount; "
        "ALMAccount.objects.create(name='Jira - Connected long ago', base_url='https://jira.example.com/jira', "
        "client_id='c', client_secret='s', access_token='a', refresh_token='r', status='connected', "
        "connected_at=timezone.now(), token_expires_at=timezone.now())"
    ))
    log_in(page, app)
    page.goto(app.url + "/admin/alm_accounts/almaccount/?q=Connected+long+ago")
    page.get_by_role("link", name="Jira - Connected long ago").click()
    expect(page.locator(".form-row.field-status_display")).to_contain_text("Connected")
    expect(page.get_by_text("Keep this screen open")).to_have_count(0)


def test_at_1280_px_every_column_of_the_accounts_list_is_in_sight_not_under_the_filters(
        browser, app_server, screenshot):
    app = app_server
    app.manage("shell", "-c", (
        "from datetime import timedelta; from django.utils import timezone; "
        "from alm_accounts.models import ALMAccount; now = timezone.now(); "
        "ALMAccount.objects.create(name='Jira - Core Banking Platform EMEA', "
        "base_url='https://jira.core-banking.example.com/jira', client_id='c', client_secret='s', "
        "access_token='a', refresh_token='r', status='connected', connected_at=now, "
        "connected_as_name='svc-kendis-integration', connected_as_display_name='Kendis Integration Service', "
        "token_expires_at=now + timedelta(hours=2), last_refreshed_at=now)"
    ))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(app.url + "/admin/login/?next=/admin/alm_accounts/almaccount/")
    page.get_by_label("Username").fill(ADMIN_USERNAME)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#result_list")).to_be_visible()

    results = page.locator("#changelist .results")
    scroll_width, client_width = results.evaluate("el => [el.scrollWidth, el.clientWidth]")
    assert scroll_width <= client_width, f"the list scrolls sideways: {scroll_width} > {client_width} px"
    shown = results.bounding_box()
    panel = page.locator("#changelist-filter").bounding_box()
    for column in ("connected_as", "token_expires_at", "last_refreshed_at"):
        cell = page.locator(f"#result_list th.column-{column}").bounding_box()
        assert cell["x"] + cell["width"] <= shown["x"] + shown["width"] + 1, (column, cell, shown)
        overlaps = (cell["x"] < panel["x"] + panel["width"] and panel["x"] < cell["x"] + cell["width"]
                    and cell["y"] < panel["y"] + panel["height"] and panel["y"] < cell["y"] + cell["height"])
        assert not overlaps, (column, cell, panel)
    screenshot(page, "first-hour-3-accounts-list-1280")
    context.close()
