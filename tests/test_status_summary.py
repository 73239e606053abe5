"""Status at a glance above the ALM Accounts list (issue 12): counts, the refresher's last run, the red banner.

An administrator opening the list sees how many grants are connected, need
re-authorization or are failing, for the accounts' own connections and for
people's user credentials; each count leads to the list of exactly those
rows. Below, when the refresher last finished a run, and on which host. When
grants depend on the refresher and it has not finished a run for three
intervals (or never), a red banner says that tokens are not being refreshed
and how to start the refresher. All of it in a fixed number of queries.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from itertools import count

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from alm_accounts.models import ALMAccount, ALMCredential, RefresherRun
from alm_accounts.status import status_summary
from tests.conftest import run, staff_user
from tests.factories import AccountFactory, CredentialFactory

Status = ALMAccount.Status
LIST = reverse("admin:alm_accounts_almaccount_changelist")
BANNER = "Tokens are not being refreshed."
_serial = count(1)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def finished_run(ago: timedelta, host: str = "worker-1") -> RefresherRun:
    finished = timezone.now() - ago
    return RefresherRun.objects.create(started_at=finished - timedelta(seconds=4), finished_at=finished, host=host,
                                       pid=4242, outcome="ok")


def summary_html(client) -> str:
    response = client.get(LIST)
    assert response.status_code == 200
    found = re.search(r'<section class="alm-grant-status".*?</section>', response.content.decode(), re.S)
    assert found, "no status summary above the ALM Accounts list"
    return found.group(0)


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split()).replace(" ,", ",").replace(
        "( ", "(").replace(" )", ")")


def counts_line(client) -> list[str]:
    """Each count as the administrator reads it, e.g. '4 connected (2 accounts, 2 people)'."""
    items = re.findall(r'<li class="alm-grant-count[^"]*">(.*?)</li>', summary_html(client), re.S)
    return [text_of(item) for item in items]


def links(client) -> dict[str, str]:
    """The summary's links by their text, with the count they belong to: {'connected: 2 accounts': url}."""
    found = {}
    for item in re.findall(r'<li class="alm-grant-count[^"]*">(.*?)</li>', summary_html(client), re.S):
        headline = text_of(re.search(r"<strong>(.*?)</strong>", item, re.S).group(1))
        health = headline.split(" ", 1)[1]
        for url, label in re.findall(r'<a href="([^"]+)">(.*?)</a>', item, re.S):
            found[f"{health}: {text_of(label)}"] = html.unescape(url)
    return found


def listed(client, url: str) -> set[str]:
    """The rows of the list a link leads to: account names, or "username on account" for credentials."""
    response = client.get(url)
    assert response.status_code == 200
    return {str(row) if isinstance(row, ALMCredential) else row.name for row in response.context["cl"].result_list}


def banner(client) -> str:
    found = re.search(r'<div class="alm-refresher-stale" role="alert">.*?</div>', summary_html(client), re.S)
    return text_of(found.group(0)) if found else ""


def last_run_line(client) -> str:
    return text_of(re.search(r'<p class="alm-last-run"[^>]*>(.*?)</p>', summary_html(client), re.S).group(1))


@pytest.fixture
def estate(db):
    """Accounts and people's credentials in every state."""
    core = AccountFactory(name="Core Banking")
    AccountFactory(name="Payments")
    AccountFactory(name="Loans", failing=True)  # connected, but refreshes fail since 12 minutes
    AccountFactory(name="Cards", status=Status.NEEDS_REAUTHORIZATION)
    AccountFactory(name="Treasury", status=Status.ERROR)
    AccountFactory(name="Not yet", status=Status.NOT_CONNECTED)
    CredentialFactory(account=core, user__username="alice")
    CredentialFactory(account=core, user__username="bob")
    CredentialFactory(account=core, user__username="carol", status=Status.NEEDS_REAUTHORIZATION)
    CredentialFactory(account=core, user__username="dave", failing=True)
    return core


# --------------------------------------------------------------------------
# counts and links
# --------------------------------------------------------------------------


def test_counts_per_health_for_accounts_and_people(admin_client, estate):
    assert counts_line(admin_client) == [
        "4 connected (2 accounts, 2 people)",
        "2 need re-authorization (1 account, 1 person)",
        "3 failing (2 accounts, 1 person)",
    ]


def test_each_count_leads_to_exactly_the_rows_it_counts(admin_client, estate):
    found = links(admin_client)
    assert set(found) == {"connected: 2 accounts", "connected: 2 people", "need re-authorization: 1 account",
                          "need re-authorization: 1 person", "failing: 2 accounts", "failing: 1 person"}
    people = reverse("admin:alm_accounts_almcredential_changelist")
    assert all(url.startswith(LIST if "account" in label else people) for label, url in found.items())

    assert listed(admin_client, found["connected: 2 accounts"]) == {"Core Banking", "Payments"}
    assert listed(admin_client, found["connected: 2 people"]) == {"alice on Core Banking", "bob on Core Banking"}
    assert listed(admin_client, found["need re-authorization: 1 account"]) == {"Cards"}
    assert listed(admin_client, found["need re-authorization: 1 person"]) == {"carol on Core Banking"}
    assert listed(admin_client, found["failing: 2 accounts"]) == {"Loans", "Treasury"}
    assert listed(admin_client, found["failing: 1 person"]) == {"dave on Core Banking"}


def test_the_filters_the_links_use_are_in_both_lists_sidebars(admin_client, estate):
    for url in (LIST, reverse("admin:alm_accounts_almcredential_changelist")):
        page = admin_client.get(url).content.decode()
        assert "By connection health" in page
        assert "?health=failing" in page


def test_a_count_of_zero_is_no_link(admin_client, db):
    AccountFactory(name="Core Banking")
    assert counts_line(admin_client) == [
        "1 connected (1 account, 0 people)",
        "0 need re-authorization (0 accounts, 0 people)",
        "0 failing (0 accounts, 0 people)",
    ]
    assert set(links(admin_client)) == {"connected: 1 account"}


def test_people_counts_link_only_for_those_who_may_see_the_credentials(client, estate):
    viewer = staff_user("viewer", "view_almaccount")
    client.force_login(viewer)
    assert counts_line(client)[0] == "4 connected (2 accounts, 2 people)"
    assert set(links(client)) == {"connected: 2 accounts", "need re-authorization: 1 account",
                                  "failing: 2 accounts"}


# --------------------------------------------------------------------------
# the last run
# --------------------------------------------------------------------------


def test_without_a_finished_run_the_summary_says_so(admin_client, db):
    RefresherRun.objects.create(host="worker-1", pid=1)  # started, still running
    assert last_run_line(admin_client) == "No refresh run has finished yet."


def test_the_newest_finished_run_is_shown_with_its_host(admin_client, db):
    finished_run(timedelta(minutes=40), host="old-host")
    finished_run(timedelta(minutes=7), host="worker-3.example.com")
    RefresherRun.objects.create(host="still-running", pid=2)  # newer, but not finished
    assert last_run_line(admin_client) == "Last refresh run 7 minutes ago on worker-3.example.com."


def test_a_run_that_just_finished_says_less_than_a_minute(admin_client, db):
    finished_run(timedelta(seconds=20))
    assert last_run_line(admin_client) == "Last refresh run less than a minute ago on worker-1."


def test_a_host_name_is_shown_as_text(admin_client, db):
    finished_run(timedelta(minutes=2), host="<script>alert(1)</script>")
    section = summary_html(admin_client)
    assert "<script>" not in section
    assert "&lt;script&gt;" in section


# --------------------------------------------------------------------------
# the red banner
# --------------------------------------------------------------------------


def test_connected_grants_and_no_run_ever_raise_the_banner_with_how_to_start_the_refresher(admin_client, db):
    AccountFactory(name="Core Banking")
    AccountFactory(name="Payments")
    text = banner(admin_client)
    assert text.startswith(BANNER)
    assert "No refresh run has finished yet, and 2 connections to Jira depend on it" in text
    assert "manage.py refresh_tokens --loop" in text
    assert "make run" in text
    assert "*/5 * * * * cd <install directory> && .venv/bin/python manage.py refresh_tokens -v 0" in text
    assert "Keeping connections alive" in text


def test_a_recent_finished_run_means_no_banner(admin_client, db):
    AccountFactory(name="Core Banking")
    finished_run(timedelta(minutes=4))
    assert banner(admin_client) == ""
    assert "Last refresh run 4 minutes ago on worker-1." == last_run_line(admin_client)


def test_a_run_older_than_three_intervals_raises_the_banner(admin_client, db):
    AccountFactory(name="Core Banking")
    finished_run(timedelta(minutes=16))  # three intervals of 5 minutes: 15
    text = banner(admin_client)
    assert "No refresh run has finished for 16 minutes, and 1 connection to Jira depends on it" in text


def test_within_three_intervals_there_is_no_banner(admin_client, db):
    AccountFactory(name="Core Banking")
    finished_run(timedelta(minutes=14))
    assert banner(admin_client) == ""


def test_the_interval_setting_decides_when_the_refresher_counts_as_stopped(admin_client, db, settings):
    settings.REFRESHER_INTERVAL_SECONDS = 60
    AccountFactory(name="Core Banking")
    finished_run(timedelta(minutes=4))
    text = banner(admin_client)
    assert "No refresh run has finished for 4 minutes" in text
    assert "it should run every 1 minute" in text
    assert "* * * * * cd <install directory>" in text

    settings.REFRESHER_INTERVAL_SECONDS = 3600
    assert banner(admin_client) == ""


@pytest.mark.parametrize(("seconds", "cron_line"), [
    (300, "*/5 * * * * cd <install directory> && .venv/bin/python manage.py refresh_tokens -v 0"),
    (600, "*/10 * * * * cd <install directory> && .venv/bin/python manage.py refresh_tokens --window 30 -v 0"),
    (1800, "*/30 * * * * cd <install directory> && .venv/bin/python manage.py refresh_tokens --window 90 -v 0"),
    (3600, "0 * * * * cd <install directory> && .venv/bin/python manage.py refresh_tokens --window 180 -v 0"),
])
def test_the_banners_cron_line_fits_the_interval(admin_client, db, settings, seconds, cron_line):
    """Issue 19b: a cron job at the configured interval, with a window that outlasts the pause between its runs
    (the default 15 minutes would let tokens expire between two runs half an hour apart)."""
    settings.REFRESHER_INTERVAL_SECONDS = seconds
    AccountFactory(name="Core Banking")
    finished_run(timedelta(seconds=3 * seconds + 60))
    assert cron_line in banner(admin_client)


def test_a_run_still_under_way_does_not_count_as_finished(admin_client, db):
    AccountFactory(name="Core Banking")
    finished_run(timedelta(hours=2))
    RefresherRun.objects.create(host="worker-1", pid=7, started_at=timezone.now() - timedelta(minutes=1))
    assert "No refresh run has finished for 2 hours" in banner(admin_client)


@pytest.mark.parametrize("status", [Status.NOT_CONNECTED, Status.NEEDS_REAUTHORIZATION])
def test_without_grants_to_keep_alive_there_is_no_banner(admin_client, db, status):
    """Nothing to refresh: a refresher that never ran harms nobody (a fresh install, or only refused grants)."""
    CredentialFactory(account=AccountFactory(name="Core Banking", status=status), user__username="alice", status=status)
    assert banner(admin_client) == ""
    assert last_run_line(admin_client) == "No refresh run has finished yet."


def test_a_person_s_connected_credential_alone_raises_the_banner(admin_client, db):
    CredentialFactory(account=AccountFactory(name="Core Banking", status=Status.NOT_CONNECTED), user__username="alice")
    assert "1 connection to Jira depends on it" in banner(admin_client)


def test_an_inactive_person_s_credential_is_not_kept_alive_so_raises_no_banner(admin_client, db):
    """Such a credential is never refreshed (services.grants): no refresher would help it."""
    CredentialFactory(account=AccountFactory(name="Core Banking", status=Status.NOT_CONNECTED), user__username="alice")
    User.objects.filter(username="alice").update(is_active=False)  # bypasses the signal that ends the credential
    assert banner(admin_client) == ""


def test_failing_grants_still_need_the_refresher(admin_client, db):
    AccountFactory(name="Loans", failing=True)
    AccountFactory(name="Treasury", status=Status.ERROR)
    assert "2 connections to Jira depend on it" in banner(admin_client)


# --------------------------------------------------------------------------
# cost: a fixed number of queries
# --------------------------------------------------------------------------


def populate(n: int) -> None:
    """n accounts and n people's credentials, across every health, and n refresher runs."""
    statuses = [(Status.CONNECTED, False), (Status.CONNECTED, True), (Status.NEEDS_REAUTHORIZATION, False),
                (Status.ERROR, False), (Status.NOT_CONNECTED, False)]
    first = AccountFactory(name=f"Account {next(_serial)}")
    for i in range(n - 1):
        status, failing = statuses[i % len(statuses)]
        AccountFactory(name=f"Account {next(_serial)}", status=status, failing=failing)
    for i in range(n):
        status, failing = statuses[i % len(statuses)]
        CredentialFactory(account=first, user__username=f"person-{next(_serial)}", status=status, failing=failing)
    for i in range(n):
        finished_run(timedelta(minutes=i + 1), host=f"worker-{i}")


def queries_of(action) -> int:
    with CaptureQueriesContext(connection) as captured:
        action()
    return len(captured.captured_queries)


@pytest.mark.parametrize("what", ["summary", "page"])
def test_the_number_of_queries_does_not_grow_with_grants_or_runs(admin_client, db, what):
    action = status_summary if what == "summary" else (lambda: admin_client.get(LIST))
    populate(1)
    with_one = queries_of(action)
    populate(49)
    with_fifty = queries_of(action)
    assert with_fifty == with_one
    if what == "summary":
        assert with_one == 3  # one aggregate per kind of grant, one for the last run
    summary = status_summary()
    assert summary.counts["connected"].total > 10  # the fifty were counted, not skipped


# --------------------------------------------------------------------------
# the setting
# --------------------------------------------------------------------------


def test_the_refresher_interval_defaults_to_five_minutes_and_is_adjustable(production_env):
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.REFRESHER_INTERVAL_SECONDS)")
    assert run(production_env, "-c", code).stdout.strip() == "300"
    assert run({**production_env, "REFRESHER_INTERVAL_SECONDS": "120"}, "-c", code).stdout.strip() == "120"


@pytest.mark.parametrize("value", ["29", "3601", "0"])
def test_an_interval_out_of_range_stops_the_start_with_its_name(production_env, value):
    result = run({**production_env, "REFRESHER_INTERVAL_SECONDS": value}, "manage.py", "check")
    assert result.returncode != 0
    assert "REFRESHER_INTERVAL_SECONDS must be between 30 and 3600" in result.stderr
