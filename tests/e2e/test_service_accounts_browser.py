"""Service accounts end to end in a real browser, on Jira Data Center and on Jira Cloud (issue 22).

An administrator adds an ALM account whose Authentication is a service account's (OAuth 2.0 client credentials),
pastes the Client ID and Secret the sandbox printed for it (`sandbox_create_service_account`, docs/sandbox.md),
saves, and reads "Connected as <service account>"; Test connection works; once the service account is disabled
in Jira (`sandbox_disable_service_account`) the page says so clearly, and a disabled one cannot be saved at all.
With UPDATE_SCREENSHOTS=1 the screenshots of docs/admin-guide.md ("Creating a service account in Jira") are
taken here.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.doubles.servers import free_port
from tests.e2e.conftest import log_in_to_app, open_add_form, start_app
from tests.sandbox.conftest import start_jira_sandbox

DATA_CENTER = "Jira Server / Data Center — Service account (OAuth 2.0 client credentials)"
CLOUD = "Jira Cloud — Service account (OAuth 2.0 client credentials)"
SITE_URL = "https://kendis-sandbox.atlassian.net"
OTHER_SITE_URL = "https://kendis-other.atlassian.net"
REFUSED = "refuses the service account's Client ID and Client Secret"


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """An app of its own: the service accounts made here (one disabled in Jira on purpose) must not be in the
    session's app, whose other tests refresh every account it holds."""
    with start_app(tmp_path_factory.mktemp("kendis_app_sa")) as app:
        yield app


def fill_service_account(page, *, authentication, name, base_url, account):
    page.get_by_label("ALM Type").select_option(label="Atlassian JIRA")
    page.get_by_label("Account Name").fill(name)
    page.get_by_label("Authentication").select_option(label=authentication)
    page.get_by_label("Jira base URL").fill(base_url)
    page.get_by_label("Service account Client ID").fill(account["client_id"])
    page.get_by_label("Service account Client Secret").fill(account["client_secret"])


def show_service_account_fields(page):
    """Scroll the form so that the screenshot shows the Service account fields whole, below the Permission/Scopes."""
    page.locator("fieldset.alm-service-account").evaluate("set => set.scrollIntoView({block: 'end'})")


def save(page):
    page.get_by_role("button", name="Save", exact=True).click()


def open_account(page, name):
    """From the ALM Accounts list Save lands on, the account's own page (Test connection lives there)."""
    page.locator("#result_list").get_by_role("link", name=name, exact=True).click()


def test_data_center_service_account_connects_tests_and_says_when_it_is_disabled(page, app_server,
                                                                                  jira_sandbox_server, screenshot):
    app, sandbox = app_server, jira_sandbox_server
    account = sandbox.create_service_account("Kendis Sync", scope="WRITE")

    log_in_to_app(page, app)
    open_add_form(page, app)
    fill_service_account(page, authentication=DATA_CENTER, name="Jira - Service account", base_url=sandbox.url,
                         account=account)
    page.get_by_label("Permission").select_option("WRITE")
    # No consent: no callback URL to copy into Jira (Get Auth Token: see the test below).
    expect(page.locator("#callback-url")).to_be_hidden()
    show_service_account_fields(page)
    screenshot(page, "service-account-1-data-center-form")
    grants_before = sandbox.stats()["service_accounts"].get(account["client_id"], {}).get("200", 0)
    save(page)

    expect(page.locator(".messagelist")).to_contain_text("Connected as Kendis Sync (service account)")
    open_account(page, "Jira - Service account")
    expect(page.locator(".alm-status").first).to_have_text("Connected")
    assert account["client_secret"] not in page.content()
    # Save asked for one token and kept it: no token request per page or per call.
    assert sandbox.stats()["service_accounts"][account["client_id"]]["200"] == grants_before + 1
    screenshot(page, "service-account-2-data-center-connected")

    page.get_by_role("button", name="Test connection").click()
    expect(page.locator(".messagelist")).to_contain_text("Kendis Sync")
    expect(page.locator(".messagelist .success, .messagelist .info").first).to_be_visible()
    screenshot(page, "service-account-3-test-connection")

    # A Jira administrator disables the service account: the next use is refused, and the page says why.
    sandbox.disable_service_account(account["client_id"])
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator(".messagelist")).to_contain_text(REFUSED)
    expect(page.locator(".messagelist")).to_contain_text("deleted or disabled")
    screenshot(page, "service-account-4-disabled")


def test_the_add_form_offers_no_get_auth_token_for_a_service_account(page, app_server):
    log_in_to_app(page, app_server)
    open_add_form(page, app_server)
    page.get_by_label("Authentication").select_option(label=DATA_CENTER)

    expect(page.get_by_role("button", name=re.compile("get auth token", re.I))).to_be_hidden(timeout=3000)


def test_a_disabled_data_center_service_account_cannot_be_saved(page, app_server, jira_sandbox_server):
    app, sandbox = app_server, jira_sandbox_server
    account = sandbox.create_service_account("Kendis Disabled", scope="READ")
    sandbox.disable_service_account(account["client_id"])

    log_in_to_app(page, app)
    open_add_form(page, app)
    fill_service_account(page, authentication=DATA_CENTER, name="Jira - Disabled service account",
                         base_url=sandbox.url, account=account)
    page.get_by_label("Permission").select_option("READ")
    save(page)

    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".errorlist").first).to_contain_text(REFUSED)
    assert account["client_secret"] not in page.content()
    page.goto(app.url + "/admin/alm_accounts/almaccount/?q=Disabled+service+account")
    expect(page.locator("#result_list")).to_have_count(0)  # nothing half-stored


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """A sandbox playing Atlassian Cloud and an app whose ATLASSIAN_AUTH_URL / _API_URL are the sandbox's."""
    port = free_port()
    with start_jira_sandbox(tmp_path_factory.mktemp("jira_sandbox_sa_cloud"),
                            env={"SANDBOX_CLOUD_CALLBACK_URL": f"http://127.0.0.1:{port}/oauth/atlassian/callback/"}
                            ) as sandbox:
        app_env = {
            "ATLASSIAN_CLIENT_ID": "sandbox-cloud-client-id",
            "ATLASSIAN_CLIENT_SECRET": "sandbox-cloud-secret-dev-only-not-a-secret",
            "ATLASSIAN_AUTH_URL": f"{sandbox.url}/cloud-auth",
            "ATLASSIAN_API_URL": f"{sandbox.url.replace('127.0.0.1', 'localhost')}/cloud-api",
        }
        with start_app(tmp_path_factory.mktemp("kendis_app_sa_cloud"), port=port, env=app_env) as app:
            yield app, sandbox


@pytest.fixture
def cloud_page(browser, cloud):
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def test_cloud_service_account_connects_to_its_site_tests_and_says_when_it_is_disabled(cloud_page, cloud,
                                                                                       screenshot):
    page, (app, sandbox) = cloud_page, cloud
    account = sandbox.create_service_account("Kendis Cloud Sync", cloud=True,
                                             scopes="read:jira-work write:jira-work read:jira-user")

    log_in_to_app(page, app)
    open_add_form(page, app)
    fill_service_account(page, authentication=CLOUD, name="Jira Cloud - Service account", base_url=SITE_URL,
                         account=account)
    expect(page.locator(".form-row.field-cloud_scopes")).to_be_visible()
    expect(page.locator(".form-row.field-scope")).to_be_hidden()  # Data Center's Permission
    expect(page.locator("#cloud-callback-url")).to_be_hidden()
    show_service_account_fields(page)
    screenshot(page, "service-account-5-cloud-form")
    save(page)

    expect(page.locator(".messagelist")).to_contain_text("Connected as Kendis Cloud Sync (service account)")
    open_account(page, "Jira Cloud - Service account")
    expect(page.locator(".alm-status").first).to_have_text("Connected")
    assert account["client_secret"] not in page.content()
    screenshot(page, "service-account-6-cloud-connected")

    page.get_by_role("button", name="Test connection").click()
    expect(page.locator(".messagelist")).to_contain_text("Kendis Cloud Sync")

    sandbox.disable_service_account(account["client_id"])
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator(".messagelist")).to_contain_text(REFUSED)
    expect(page.locator(".messagelist")).to_contain_text("Atlassian administration")


def test_a_cloud_service_account_without_access_to_the_site_is_a_form_error(cloud_page, cloud):
    page, (app, sandbox) = cloud_page, cloud
    account = sandbox.create_service_account("Kendis Sandbox Only", cloud=True, sites=["kendis-sandbox"])

    log_in_to_app(page, app)
    open_add_form(page, app)
    fill_service_account(page, authentication=CLOUD, name="Jira Cloud - Wrong site", base_url=OTHER_SITE_URL,
                         account=account)
    save(page)

    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".form-row.field-base_url .errorlist")).to_contain_text("kendis-other.atlassian.net")
    assert account["client_secret"] not in page.content()
