"""A connected account's form says, before saving, that a new Jira base URL or Client ID ends the connection."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.conftest import add_connected_flow_account

ELSEWHERE = "http://127.0.0.1:9/jira"  # nothing listens there: nothing may be sent there either


def test_editing_the_base_url_of_a_connected_account_warns_then_ends_the_connection(
        page, app_server, jira_sandbox_server):
    add_connected_flow_account(page, app_server, jira_sandbox_server, name="Jira - Moving")
    page.get_by_role("button", name="Allow").click()
    expect(page.locator(".alm-status").first).to_have_text("Connected")
    base_url = page.get_by_label("Jira base URL")
    notice = page.locator("#id_base_url-ends-connection")

    # The notice appears as soon as the field differs from what is stored, and goes when it is put back.
    expect(notice).to_have_count(0)
    original = base_url.input_value()
    base_url.fill(ELSEWHERE)
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("saving ends the connection to Jira")
    base_url.fill(original + "/")
    expect(notice).to_be_hidden()
    page.get_by_label("Client ID:", exact=True).fill("another-link")
    expect(page.locator("#id_client_id-ends-connection")).to_contain_text("You changed the Client ID")
    client_id = page.get_by_label("Client ID:", exact=True)
    client_id.fill(client_id.evaluate("e => e.defaultValue"))
    expect(page.locator("#id_client_id-ends-connection")).to_be_hidden()

    # Saving a new base URL without the new Jira's Client Secret is refused on the Client Secret field.
    base_url.fill(ELSEWHERE)
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".field-client_secret .errorlist")).to_contain_text("The Jira base URL changed")
    expect(page.locator(".alm-status").first).to_have_text("Connected")

    page.get_by_label("Client Secret:", exact=True).fill("the-new-jiras-secret")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist")).to_contain_text(
        f"The connection to Jira was ended because the Jira base URL changed from {original} to {ELSEWHERE}")
    expect(page.locator(".alm-status").first).to_have_text("Not connected")
    expect(page.get_by_label("Jira base URL")).to_have_value(ELSEWHERE)
    # Not connected any more: no warning under the fields.
    expect(page.get_by_text("Changing it ends the connection")).to_have_count(0)
