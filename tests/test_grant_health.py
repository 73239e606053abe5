"""Issue 21, item 4: each grant's health where people look (alm_accounts/grant_health.py).

The account's page (its own grant and each person's), a person's credential page and My ALM Credentials (their
own): last used, last refresh, the next one planned and why, the refresh token's life, scopes, and the last weeks
of refreshes drawn as an inline SVG timeline; a fixed number of queries whatever the history.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alm_accounts.grant_health import health_of
from alm_accounts.models import RefreshDay
from alm_accounts.services.history import TIMELINE_DAYS
from tests.factories import AccountFactory, CredentialFactory, UserFactory

pytestmark = pytest.mark.django_db


def add_history(grant, days: int) -> None:
    """`days` days of refreshes of `grant`, ending today: 20 a day, a failure and its recovery every 7th day."""
    today = timezone.now().date()
    RefreshDay.objects.bulk_create(
        RefreshDay(grant_kind=grant.grant_kind, grant_id=grant.pk, day=today - timedelta(days=n), successes=20,
                   failures=1 if n % 7 == 3 else 0, recoveries=1 if n % 7 == 3 else 0, keepalives=0,
                   latency_ms_total=20 * (100 + n), latency_ms_max=300 + n)
        for n in range(days))


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_the_timeline_draws_each_day_s_successes_failures_recoveries_and_latency():
    account = AccountFactory(name="Core")
    add_history(account, 10)
    svg = health_of(account).timeline()
    assert svg.startswith('<svg class="alm-timeline" role="img"')
    assert svg.count('class="alm-day"') == 10 and svg.count("alm-day-empty") == TIMELINE_DAYS - 10
    assert svg.count('class="alm-success"') == 10
    assert svg.count('class="alm-failure"') == 1 and svg.count('class="alm-recovery"') == 1
    assert 'class="alm-latency"' in svg
    assert f"{(timezone.now().date() - timedelta(days=3)).isoformat()}: 20 refreshed (0 keep-alive), 1 failed, " \
           "1 recovered; Jira answered in 98 ms on average, 303 ms at most" in svg
    assert "Refreshes of the last 42 days: 200 succeeded, 1 failed, 1 recoveries" in svg


def test_the_refresh_token_s_life_is_told_for_each_provider():
    now = timezone.now()
    dc = AccountFactory(name="DC", last_refreshed_at=now - timedelta(days=10))
    assert health_of(dc, now=now).refresh_token_life.startswith(
        f"until {timezone.localtime(now + timedelta(days=80)):%Y-%m-%d %H:%M %Z} (80 days left): 90 days from its "
        "last refresh")
    cloud = AccountFactory(name="Cloud", provider="cloud", connected_at=now - timedelta(days=300),
                           last_refreshed_at=now - timedelta(hours=1))
    life = health_of(cloud, now=now).refresh_token_life
    assert "89 days left): 90 days without a refresh, and 365 days after the consent at most" in life
    assert "the consent ends" in life and "(65 days left)" in life


def test_the_next_refresh_says_why_in_use_or_keep_alive():
    now = timezone.now()
    busy = AccountFactory(name="Busy", last_used_at=now - timedelta(hours=1), expires_in=timedelta(hours=1))
    idle = AccountFactory(name="Idle", last_refreshed_at=now - timedelta(hours=1), expires_in=timedelta(hours=1),
                          last_used_at=None)
    assert health_of(busy, now=now).why.startswith("in use: refreshed before its access token expires, until ")
    assert health_of(idle, now=now).why.startswith("keep-alive: idle, refreshed once every 24 h")
    assert health_of(busy, now=now).next_refresh.startswith("about ")


def account_page(admin_client, account) -> tuple[str, int]:
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(account.get_admin_url())
    assert response.status_code == 200
    return response.content.decode(), len(captured)


def test_the_account_s_page_shows_its_own_and_each_person_s_health_in_a_fixed_number_of_queries(admin_client):
    account = AccountFactory(name="Core", last_used_at=timezone.now())
    people = [CredentialFactory(account=account, user=UserFactory(username=name)) for name in ("alice", "bob")]
    account_page(admin_client, account)  # the first request of the session reads a little more
    _, without_history = account_page(admin_client, account)
    for grant in [account, *people]:
        add_history(grant, 40)
    page, with_history = account_page(admin_client, account)
    assert with_history == without_history, "the history costs no query of its own"
    assert page.count('<svg class="alm-timeline"') == 3  # the account's own, alice's, bob's
    assert page.count('<details class="alm-person-health">') == 2
    text = text_of(page)
    assert "Next refresh" in text and "in use: refreshed before its access token expires" in text
    assert "granted ADMIN; asked for ADMIN" in text
    assert "REFRESHTOKEN" not in page and "ACCESSTOKEN" not in page


def test_a_person_sees_only_their_own_health_under_my_alm_credentials_in_a_fixed_number_of_queries(client):
    alice = UserFactory(username="alice", is_staff=True)
    accounts = [AccountFactory(name=f"Jira {n}") for n in range(3)]
    mine = [CredentialFactory(account=account, user=alice) for account in accounts]
    theirs = CredentialFactory(account=accounts[0], user=UserFactory(username="bob"))
    client.force_login(alice)

    def page():
        with CaptureQueriesContext(connection) as captured:
            response = client.get("/admin/my-alm-credentials/")
        assert response.status_code == 200
        return response.content.decode(), len(captured)

    page()  # the first request of the session reads a little more
    _, before = page()
    for grant in [*mine, theirs]:
        add_history(grant, 30)
    html, after = page()
    assert after == before
    assert html.count('<svg class="alm-timeline"') == 3
    assert f'data-grant="user-{theirs.pk}"' not in html
    assert all(f'data-grant="user-{credential.pk}"' in html for credential in mine)
