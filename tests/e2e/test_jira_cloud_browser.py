"""Jira Cloud end to end in a real browser: an admin connects a Cloud account, a person connects their own.

The sandbox plays Atlassian Cloud (jira_sandbox/cloud/): its authorization server answers under
http://127.0.0.1:<port>/cloud-auth and its API gateway under http://localhost:<port>/cloud-api, two hosts as
auth.atlassian.com and api.atlassian.com are. Its consent page lets the person tick the sites the app may use;
there are two, kendis-sandbox and kendis-other, and the account must end up on the one its site URL names.

Both servers are private to this module: the sandbox's registered callback URL must be this app's fixed
/oauth/atlassian/callback/, and the app must be started with this deployment's Atlassian app (ATLASSIAN_*).
"""

from __future__ import annotations

import json
import re
import secrets

import pytest
from playwright.sync_api import expect

from tests.doubles.servers import free_port
from tests.e2e.conftest import (
    create_staff_user_without_alm_permissions,
    log_in_to_app,
    open_add_form,
    row_of,
    start_app,
)
from tests.sandbox.conftest import start_jira_sandbox

CLIENT_ID = "sandbox-cloud-client-id"
CLIENT_SECRET = "sandbox-cloud-secret-dev-only-not-a-secret"
SITE_URL = "https://kendis-sandbox.atlassian.net"
CLOUD_IDS = {"kendis-sandbox": "5d3c8a6e-1f2b-4c7d-9e8a-0b1c2d3e4f51",
             "kendis-other": "a7e4b2c9-6d1f-4a3e-8b5c-9d0e1f2a3b62"}
ACCOUNT_IDS = {"jira-admin": "5b10a2844c20165700ede21g", "jira-user2": "5b10ac8d82e05b22cc7d4ef5"}
CLOUD = "Jira Cloud — Use OAuth 2.0 (3LO)"
ADMIN_DISPLAY_NAME = "Jira Sandbox Admin"
USER2_DISPLAY_NAME = "Jira Sandbox User Two"
PERSON = "cleo"
PERSON_PASSWORD = "e2e-" + secrets.token_urlsafe(12)


class CloudServers:
    def __init__(self, app, sandbox):
        self.app, self.sandbox = app, sandbox


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """A sandbox whose Atlassian app calls back to this app, and the app configured with that Atlassian app."""
    port = free_port()  # the app's URL must be registered in the sandbox before the app starts
    callback = f"http://127.0.0.1:{port}/oauth/atlassian/callback/"
    with start_jira_sandbox(tmp_path_factory.mktemp("jira_sandbox_cloud"),
                            env={"SANDBOX_CLOUD_CALLBACK_URL": callback}) as sandbox:
        app_env = {
            "ATLASSIAN_CLIENT_ID": CLIENT_ID,
            "ATLASSIAN_CLIENT_SECRET": CLIENT_SECRET,
            "ATLASSIAN_AUTH_URL": f"{sandbox.url}/cloud-auth",
            "ATLASSIAN_API_URL": f"{sandbox.url.replace('127.0.0.1', 'localhost')}/cloud-api",
        }
        with start_app(tmp_path_factory.mktemp("kendis_app_cloud"), port=port, env=app_env) as app:
            yield CloudServers(app, sandbox)


@pytest.fixture
def cloud_page(browser, cloud):
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=cloud.app.url)
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def fill_cloud_account(page, *, name):
    page.get_by_label("ALM Type").select_option(label="Atlassian JIRA")
    page.get_by_label("Account Name").fill(name)
    page.get_by_label("Authentication").select_option(label=CLOUD)
    page.get_by_label("Jira base URL").fill(SITE_URL)


def consent_on_atlassian(page, sandbox, *, sites, username=None, password=None):
    """On the sandbox's Cloud consent page (logging in first if it asks), tick exactly `sites` and Accept."""
    if page.locator("#consent-form").count() == 0:
        page.get_by_label("Username").fill(username or sandbox.admin_username)
        page.get_by_label("Password").fill(password or sandbox.admin_password)
        page.get_by_role("button", name="Log in").click()
    expect(page.locator("#consent-form")).to_be_visible()
    for name in CLOUD_IDS:
        page.locator(f"#site-{name}").set_checked(name in sites)
    page.get_by_role("button", name="Accept").click()


def connect_cloud_account(page, cloud, *, name):
    """The admin's steps of the first test, without its checks: a connected Cloud account."""
    log_in_to_app(page, cloud.app)
    open_add_form(page, cloud.app)
    fill_cloud_account(page, name=name)
    page.get_by_role("button", name="Save and get auth token").click()
    consent_on_atlassian(page, cloud.sandbox, sites=CLOUD_IDS)
    expect(page.locator(".messagelist")).to_contain_text(f"Connected to Jira as {ADMIN_DISPLAY_NAME}")


def readonly(page, field):
    return page.locator(f".form-row.field-{field} .readonly")


def test_an_admin_connects_a_jira_cloud_account_to_the_site_it_names(cloud_page, cloud, screenshot):
    page, app, sandbox = cloud_page, cloud.app, cloud.sandbox

    # The account form for Jira Cloud: the scopes and this deployment's one callback URL, no Permission.
    log_in_to_app(page, app)
    open_add_form(page, app)
    fill_cloud_account(page, name="Jira Cloud - Core Banking")
    expect(page.locator(".form-row.field-cloud_scopes")).to_be_visible()
    expect(page.get_by_role("checkbox", name="read:jira-work")).to_be_checked()
    expect(page.get_by_role("checkbox", name="write:jira-work")).to_be_checked()
    expect(page.locator(".form-row.field-scope")).to_be_hidden()  # Data Center's Permission
    expect(page.locator("#callback-url")).to_be_hidden()  # Data Center's per-account callback URL
    cloud_callback = page.locator("#cloud-callback-url")
    expect(cloud_callback).to_be_visible()
    expect(cloud_callback).to_have_value(app.url + "/oauth/atlassian/callback/")
    cloud_callback.locator("xpath=..").get_by_role("button", name="Copy URL").click()
    assert page.evaluate("navigator.clipboard.readText()") == app.url + "/oauth/atlassian/callback/"
    screenshot(page, "cloud-1-account-form")

    # Atlassian's consent page: the person chooses the sites; both are offered and ticked.
    page.get_by_role("button", name="Save and get auth token").click()
    page.get_by_label("Username").fill(sandbox.admin_username)
    page.get_by_label("Password").fill(sandbox.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#consent-form")).to_be_visible()
    for name in CLOUD_IDS:
        expect(page.locator(f"#site-{name}")).to_be_checked()
    screenshot(page, "cloud-2-consent")
    page.get_by_role("button", name="Accept").click()

    # Back on the account page: connected, on the site the site URL names (not the other one the grant reaches).
    expect(page.locator(".messagelist")).to_contain_text(f"Connected to Jira as {ADMIN_DISPLAY_NAME}")
    expect(page.locator(".alm-status").first).to_have_text("Connected")
    expect(readonly(page, "provider_display")).to_have_text(re.compile(r"^Jira Cloud\b"))
    expect(readonly(page, "cloud_site")).to_have_text(f"kendis-sandbox — cloud id {CLOUD_IDS['kendis-sandbox']}")
    assert "code=" not in page.url and "state=" not in page.url
    assert CLIENT_SECRET not in page.content()
    screenshot(page, "cloud-3-connected")

    # Test connection reaches the site through Atlassian's API gateway, at the site's cloud id.
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator(".messagelist")).to_contain_text(
        f"Connected to Jira Cloud site kendis-sandbox ({SITE_URL}) as {ADMIN_DISPLAY_NAME}")
    gateway_calls = sandbox.log_path.read_text()
    assert f"/cloud-api/ex/jira/{CLOUD_IDS['kendis-sandbox']}/rest/api/3/serverInfo" in gateway_calls
    assert f"/cloud-api/ex/jira/{CLOUD_IDS['kendis-other']}/" not in gateway_calls


def issue_created_for(app, *, account, person):
    """Create a DEMO issue with jira_request as `person`, read it back as the account: its reporter's accountId."""
    fields = {"project": {"key": "DEMO"}, "summary": f"Created for {person}", "issuetype": {"name": "Task"}}
    code = (
        "import json\n"
        "from django.contrib.auth.models import User\n"
        "from alm_accounts.models import ALMAccount\n"
        "from alm_accounts.services import jira_request\n"
        f"account = ALMAccount.objects.get(name={account!r})\n"
        f"created = jira_request(account=account, method='POST', path='/rest/api/3/issue', "
        f"user=User.objects.get(username={person!r}), json={{'fields': {fields!r}}})\n"
        "issue = jira_request(account=account, method='GET', path='/rest/api/3/issue/' + created['key'])\n"
        "print(json.dumps(issue['fields']['reporter']))\n"
    )
    return json.loads(app.manage("shell", "-c", code).stdout.strip().splitlines()[-1])


def stored_tokens_of(app, *, account, person) -> bool:
    code = (
        "from alm_accounts.models import ALMCredential\n"
        f"c = ALMCredential.objects.filter(account__name={account!r}, user__username={person!r}).first()\n"
        "print(bool(c and (c.refresh_token or c.access_token)))\n"
    )
    return app.manage("shell", "-c", code).stdout.strip().splitlines()[-1] == "True"


def test_a_person_connects_their_own_atlassian_account_and_must_choose_the_accounts_site(cloud_page, cloud):
    page, app, sandbox = cloud_page, cloud.app, cloud.sandbox
    account = "Jira Cloud - Payments"
    connect_cloud_account(page, cloud, name=account)
    page.get_by_role("button", name="Log out").click()

    create_staff_user_without_alm_permissions(app, PERSON, PERSON_PASSWORD)
    page.goto(app.url + "/admin/")
    page.get_by_label("Username").fill(PERSON)
    page.get_by_label("Password").fill(PERSON_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.locator("#user-tools").get_by_role("link", name="My ALM Credentials").click()
    row_of(page, account).get_by_role("button", name="Connect my Jira account").click()

    # Atlassian still knows the admin in this browser: switch to jira-user2, and tick only the other site.
    expect(page.locator("#current-user")).to_have_text(ADMIN_DISPLAY_NAME)
    page.get_by_role("link", name="Log out").click()
    consent_on_atlassian(page, sandbox, sites=["kendis-other"], username=sandbox.user2_username,
                         password=sandbox.user2_password)
    message = page.locator(".messagelist")
    expect(message).to_contain_text("kendis-other")
    expect(message).to_contain_text(f"not {SITE_URL}: nothing was stored")
    expect(row_of(page, account).locator(".alm-status")).to_have_text("Not connected")
    assert not stored_tokens_of(app, account=account, person=PERSON)

    # Again, choosing the account's site this time.
    row_of(page, account).get_by_role("button", name="Connect my Jira account").click()
    expect(page.locator("#current-user")).to_have_text(USER2_DISPLAY_NAME)
    consent_on_atlassian(page, sandbox, sites=["kendis-sandbox"])
    expect(page.locator(".messagelist")).to_contain_text(f"Connected to Jira as {USER2_DISPLAY_NAME}")
    assert re.search(r"/admin/my-alm-credentials/$", page.url), page.url
    expect(row_of(page, account).locator(".alm-status")).to_have_text(f"Connected as {USER2_DISPLAY_NAME}")
    assert stored_tokens_of(app, account=account, person=PERSON)

    # What the product creates for this person is reported in Jira Cloud by their Atlassian account.
    reporter = issue_created_for(app, account=account, person=PERSON)
    assert reporter["accountId"] == ACCOUNT_IDS["jira-user2"]
    assert reporter["displayName"] == USER2_DISPLAY_NAME


def stored_scopes_of(app, *, account) -> str:
    code = ("from alm_accounts.models import ALMAccount\n"
            f"print(ALMAccount.objects.get(name={account!r}).cloud_scopes)\n")
    return app.manage("shell", "-c", code).stdout.strip().splitlines()[-1]


def test_a_cloud_accounts_scopes_come_back_ticked_and_survive_an_edit_and_the_yearly_reconsent(cloud_page, cloud):
    page, app = cloud_page, cloud.app
    account = "Jira Cloud - Reconsent"
    log_in_to_app(page, app)
    open_add_form(page, app)
    fill_cloud_account(page, name=account)
    page.get_by_role("checkbox", name="manage:jira-configuration").uncheck()
    page.get_by_role("button", name="Save and get auth token").click()
    consent_on_atlassian(page, cloud.sandbox, sites=CLOUD_IDS)
    expect(page.locator(".messagelist")).to_contain_text(f"Connected to Jira as {ADMIN_DISPLAY_NAME}")
    chosen = "read:jira-work write:jira-work read:jira-user manage:jira-project offline_access"
    assert stored_scopes_of(app, account=account) == chosen

    # Reopened: the boxes show what was saved.
    page.reload()
    for scope in ("read:jira-work", "write:jira-work", "read:jira-user", "manage:jira-project"):
        expect(page.get_by_role("checkbox", name=scope)).to_be_checked()
    expect(page.get_by_role("checkbox", name="manage:jira-configuration")).not_to_be_checked()

    # An unrelated edit saves, and keeps the scopes.
    page.get_by_label("Notify").fill("jira-admins@example.com")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".errornote")).to_have_count(0)
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    assert stored_scopes_of(app, account=account) == chosen

    # The yearly re-consent: Get Auth Token on the unchanged form.
    page.get_by_role("button", name="Get Auth Token").click()
    consent_on_atlassian(page, cloud.sandbox, sites=CLOUD_IDS)
    expect(page.locator(".messagelist")).to_contain_text(f"Connected to Jira as {ADMIN_DISPLAY_NAME}")
    assert stored_scopes_of(app, account=account) == chosen


def test_jira_call_reaches_a_cloud_site_in_rest_v2_as_in_v3(cloud_page, cloud):
    """Jira Cloud serves REST v2 beside v3: an ops engineer's `jira_call … GET /rest/api/2/myself` works."""
    account = "Jira Cloud - REST v2"
    connect_cloud_account(cloud_page, cloud, name=account)

    answers = {version: json.loads(cloud.app.manage("jira_call", account, "GET", f"/rest/api/{version}/myself").stdout)
               for version in (2, 3)}

    assert answers[2]["accountId"] == answers[3]["accountId"] == ACCOUNT_IDS["jira-admin"]
    assert answers[2]["displayName"] == ADMIN_DISPLAY_NAME
