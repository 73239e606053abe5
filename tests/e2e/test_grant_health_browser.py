"""A connected account's health section in a real browser: the next refresh and why, and the timeline of refreshes
drawn as inline SVG (issue 21)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import add_connected_flow_account, start_app

ACCOUNT = "Jira - Health"


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """An app of its own: this test runs the refresher, which the session's app must not have seen (the setup
    walk-through shows the "no refresh run yet" banner)."""
    with start_app(tmp_path_factory.mktemp("kendis_app_health")) as app:
        yield app


def test_the_account_s_health_section_shows_the_timeline_of_its_refreshes(page, app_server, jira_sandbox_server):
    add_connected_flow_account(page, app_server, jira_sandbox_server, name=ACCOUNT)
    page.get_by_role("button", name="Allow").click()
    expect(page.locator(".alm-status").first).to_have_text("Connected")
    # Two real refreshes against the sandbox today, and a failed day with its recovery a week ago.
    for _ in range(2):
        app_server.manage("refresh_tokens", "--force", "--account", ACCOUNT, "-v", "0")
    app_server.manage("shell", "-c", (
        "from datetime import timedelta; from django.utils import timezone; "
        "from alm_accounts.models import ALMAccount, RefreshDay; "
        f"a = ALMAccount.objects.get(name={ACCOUNT!r}); "
        "RefreshDay.objects.create(grant_kind='account', grant_id=a.pk, day=timezone.now().date() - "
        "timedelta(days=7), successes=3, failures=2, recoveries=1, latency_ms_total=900, latency_ms_max=400)"))
    page.reload()

    health = page.locator(".field-grant_health .alm-health")
    expect(health).to_be_visible()
    expect(health.locator(".alm-health-next")).to_contain_text("keep-alive: idle, refreshed once every 24 h")
    timeline = health.locator("svg.alm-timeline")
    expect(timeline).to_be_visible()
    expect(timeline).to_have_attribute("aria-label", "Refreshes of the last 42 days: 5 succeeded, 2 failed, "
                                                     "1 recoveries")
    expect(timeline.locator("rect.alm-success")).to_have_count(2)
    expect(timeline.locator("rect.alm-failure")).to_have_count(1)
    expect(timeline.locator("circle.alm-recovery")).to_have_count(1)
    box = timeline.bounding_box()
    assert box is not None and box["width"] > 400 and box["height"] > 40
    expect(health.locator("figcaption")).to_contain_text("5 refreshed (0 keep-alives), 2 failed, 1 recovered.")
