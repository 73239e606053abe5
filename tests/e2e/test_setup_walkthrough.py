"""The setup walk-through of docs/admin-guide.md ("Connect Jira Data Center"), clicked through in a real browser.

App and Jira sandbox run as real servers; every step uses the labelled
buttons and fields an administrator sees.
"""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import (
    add_connected_flow_account,
    fill_account,
    log_in_to_app,
    log_in_to_sandbox,
    open_accounts_list,
    open_add_form,
)


def test_walkthrough_connects_and_keeps_the_connection(page, app_server, jira_sandbox_server, screenshot):
    app, sandbox = app_server, jira_sandbox_server

    # I. Create the ALM account and copy the callback URL (in our app).
    log_in_to_app(page, app)
    open_add_form(page, app)
    fill_account(page, name="Jira - Core Banking", base_url=sandbox.url)
    expect(page.get_by_text("Callback URL").first).to_be_visible()
    page.get_by_role("button", name="Copy URL").click()
    expect(page.locator(".copy-url-status:visible")).to_have_text("Copied.")
    expect(page.locator("#cloud-callback-url")).to_be_hidden()  # Jira Cloud's one callback URL: not for Data Center
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith(app.url + "/oauth/jira/callback/")
    assert copied == page.locator("#callback-url").input_value()
    screenshot(page, "1-add-alm-account")

    # II. Create an incoming application link (in Jira), in a second tab.
    jira = page.context.new_page()
    log_in_to_sandbox(jira, sandbox)
    # The model's row on Jira's administration index (the app heading links elsewhere).
    jira.locator("tr.model-incominglink").get_by_role("link", name="Application links").click()
    jira.get_by_role("link", name=re.compile("Create link", re.I)).click()
    jira.get_by_label("Name").fill("Core Banking")
    jira.get_by_label("Redirect URL").fill(copied)
    jira.get_by_label("Permission").select_option("ADMIN")
    screenshot(jira, "2-create-link")
    jira.get_by_role("button", name=re.compile("^Save$")).click()
    client_id = jira.locator("#client-id").inner_text().strip()
    client_secret = jira.locator("#client-secret").inner_text().strip()
    assert client_id and client_secret
    screenshot(jira, "3-link-credentials")

    # III. Paste the credentials and get the token (back in our app).
    page.bring_to_front()
    page.get_by_label("Client ID:", exact=True).fill(client_id)
    page.get_by_label("Client Secret:", exact=True).fill(client_secret)
    page.get_by_label("Permission").select_option("ADMIN")
    page.get_by_role("button", name="Save and get auth token").click()
    expect(page.locator("#consent-form")).to_be_visible()
    expect(page.locator("#scope")).to_have_text("ADMIN")
    screenshot(page, "4-consent")
    page.get_by_role("button", name="Allow").click()

    expect(page.locator(".messagelist")).to_contain_text("Connected to Jira as Jira Sandbox Admin (ADMIN)")
    expect(page.locator(".alm-status").first).to_have_text("Connected")
    assert "code=" not in page.url and "state=" not in page.url
    assert client_secret not in page.content()
    screenshot(page, "5-connected")

    page.get_by_role("button", name="Test connection").click()
    expect(page.locator(".messagelist")).to_contain_text(
        f"Connected to Jira 9.12.2 at {sandbox.url} as Jira Sandbox Admin")
    screenshot(page, "6-test-connection")

    # Status at a glance on the ALM Accounts list: no refresher has run yet, so the red banner says so and how to
    # start one; the count of connected accounts leads to a list with this account.
    account_page = page.url
    open_accounts_list(page, app)
    summary = page.locator(".alm-grant-status")
    expect(summary).to_be_visible()
    expect(summary.locator(".alm-refresher-stale")).to_contain_text("Tokens are not being refreshed.")
    expect(summary.locator(".alm-refresher-stale")).to_contain_text("manage.py refresh_tokens --loop")
    expect(summary.locator(".alm-last-run")).to_have_text("No refresh run has finished yet.")
    screenshot(page, "8-status-at-a-glance")
    summary.locator(".alm-grant-count-connected").get_by_role("link", name=re.compile(r"^\d+ accounts?$")).click()
    expect(page.locator("#result_list")).to_contain_text("Jira - Core Banking")
    page.goto(account_page)

    grants_before = sandbox.token_grants
    result = app.manage("refresh_tokens", "--force")
    assert "Jira - Core Banking: refreshed" in result.stdout
    assert "1 refreshed" in result.stdout
    assert sandbox.token_grants == grants_before + 1

    # The rotated token works: a second test connection still succeeds.
    page.reload()
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator(".messagelist")).to_contain_text("Connected to Jira 9.12.2")

    # refresh_tokens left its heartbeat: the banner is gone and the list says when and where it last ran.
    open_accounts_list(page, app)
    expect(page.locator(".alm-last-run")).to_have_text(re.compile(r"^Last refresh run less than a minute ago on \S+"))
    expect(page.locator(".alm-refresher-stale")).to_have_count(0)


def test_deny_at_consent_is_explained_on_the_account_page(page, app_server, jira_sandbox_server):
    add_connected_flow_account(page, app_server, jira_sandbox_server, name="Jira - Denied")
    page.get_by_role("button", name="Deny").click()
    expect(page.locator(".messagelist")).to_contain_text("Access was denied on Jira's consent screen")
    expect(page.locator(".alm-status").first).to_have_text("Not connected")


def test_wrong_client_secret_is_explained_on_the_account_page(page, app_server, jira_sandbox_server):
    add_connected_flow_account(page, app_server, jira_sandbox_server, name="Jira - Wrong secret",
                               client_secret="not-the-secret-jira-showed")
    page.get_by_role("button", name="Allow").click()
    expect(page.locator(".messagelist")).to_contain_text("Check the Client ID and the Client Secret")
    expect(page.locator(".alm-status").first).to_have_text("Error")
    assert "not-the-secret-jira-showed" not in page.content()


def test_reloading_the_callback_says_the_answer_was_already_used(page, app_server, jira_sandbox_server):
    add_connected_flow_account(page, app_server, jira_sandbox_server, name="Jira - Reload")
    with page.expect_response(re.compile(r"/oauth/jira/callback/")) as callback:
        page.get_by_role("button", name="Allow").click()
    expect(page.locator(".messagelist")).to_contain_text("Connected to Jira as Jira Sandbox Admin")
    # Back to Jira's redirect (what a page refresh or Back does): the state was single use.
    page.goto(callback.value.url)
    expect(page.locator(".messagelist")).to_contain_text("already used")
    expect(page.locator(".alm-status").first).to_have_text("Connected")
