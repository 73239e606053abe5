"""Issue 21, item 1: grants in use are kept fresh, idle grants are only kept alive.

The one rule (selectors.due, and selectors.plan for one grant), the product's use recorded off the request's path
(services.usage), each refresh's day (services.history), and days of refresher passes against the fake Jira with
the app's clock moved: idle grants live on keep-alives only, grants in use stay fresh, killed grants are flagged in
time.
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management.base import OutputWrapper
from django.core.management.color import no_style
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alm_accounts import selectors, services
from alm_accounts.models import Alert, ALMAccount, GrantStatus, RefreshDay
from alm_accounts.refresher.main import Options, main
from alm_accounts.refresher.report import Report
from alm_accounts.services import GrantRef, RefreshOutcome, usage
from tests.factories import connect_account, grant_key

WINDOW = timedelta(minutes=15)  # the refresher's window (refresh_tokens' default)
START = datetime(2026, 12, 1, 0, 3, 17, tzinfo=UTC)


class Clock:
    """The app's clock (django.utils.timezone.now), moved by the test; the fake Jira reads it too."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()


@pytest.fixture
def clock(monkeypatch) -> Clock:
    moved = Clock(START)
    monkeypatch.setattr(timezone, "now", moved)
    return moved


@pytest.fixture(autouse=True)
def _fresh_usage_memory():
    usage.forget_written()
    yield
    usage.forget_written()


def updates_of(captured: CaptureQueriesContext, model=ALMAccount) -> list[str]:
    table = connection.ops.quote_name(model._meta.db_table)
    return [q["sql"] for q in captured.captured_queries if q["sql"].startswith(f"UPDATE {table}")]


# --------------------------------------------------------------------------
# The rule
# --------------------------------------------------------------------------


def test_keepalive_moments_of_consecutive_grants_spread_evenly_over_the_interval():
    """10,000 grants with consecutive ids: every quarter of an hour of the day holds about as many keep-alives
    (never all at the same minute), and each grant keeps its own moment."""
    interval = 24 * 3600
    slots = Counter(selectors.keepalive_phase(pk, interval) // 900 for pk in range(1, 10_001))
    mean = 10_000 / 96
    assert len(slots) == 96
    assert max(slots.values()) <= 1.2 * mean and min(slots.values()) >= 0.8 * mean, slots
    assert selectors.keepalive_phase(4242, interval) == selectors.keepalive_phase(4242, interval)


@pytest.mark.django_db
def test_the_refresher_s_query_and_the_health_section_s_plan_are_the_same_rule(clock):
    """selectors.due (SQL, what the refresher, status and metrics count) and selectors.plan (Python, what the health
    section says) agree on every grant at every moment: in use or not, refreshed or only connected, expiring or
    not, before and after its keep-alive moment."""
    grants = []
    for i in range(48):
        used = [None, START - timedelta(hours=2), START - timedelta(hours=30)][i % 3]
        refreshed = [None, START - timedelta(hours=3), START - timedelta(hours=23, minutes=50)][(i // 3) % 3]
        expires = [None, START + timedelta(minutes=5), START + timedelta(hours=1)][(i // 9) % 3]
        grants.append(ALMAccount(name=f"Rule {i:02}", base_url="https://jira.example.com", client_id="c",
                                 status=GrantStatus.CONNECTED, refresh_token=f"RT-{i}", access_token=f"AT-{i}",
                                 connected_at=START - timedelta(days=2), last_used_at=used,
                                 last_refreshed_at=refreshed, token_expires_at=expires))
    ALMAccount.objects.bulk_create(grants)
    grants = list(ALMAccount.objects.all())
    idle_due, idle_held = set(), set()  # idle, expiring grants: taken, and left for their keep-alive moment
    for minutes in range(0, 36 * 60, 50):
        clock.now = START + timedelta(minutes=minutes)
        in_sql = set(selectors.due_grants("account", within=WINDOW).values_list("pk", flat=True))
        in_python = {g.pk for g in grants if selectors.plan(g, within=WINDOW).due}
        assert in_sql == in_python, clock.now
        idle_expiring = {g.pk for g in grants if not selectors.plan(g, within=WINDOW).in_use
                         and (g.token_expires_at is None or g.token_expires_at <= clock.now + WINDOW)}
        idle_due |= idle_expiring & in_sql
        idle_held |= idle_expiring - in_sql
    assert idle_due and idle_held


@pytest.mark.django_db
def test_an_idle_grant_waits_for_its_keepalive_moment_a_grant_in_use_only_for_its_expiry(clock):
    idle, busy = (ALMAccount.objects.create(
        name=name, base_url="https://jira.example.com", status=GrantStatus.CONNECTED, refresh_token="RT",
        access_token="AT", connected_at=START - timedelta(days=3), last_refreshed_at=START,
        token_expires_at=START + timedelta(hours=2), last_used_at=used)
        for name, used in (("Idle", None), ("Busy", START)))
    moment = selectors.last_keepalive_moment(idle.pk, START) + timedelta(days=1)  # its first after START

    def due_now():
        return set(selectors.due_grants("account", within=WINDOW).values_list("name", flat=True))

    clock.now = START + timedelta(hours=1, minutes=50)  # both tokens expire within the window
    assert due_now() == {"Busy"}
    plan = selectors.plan(idle, within=WINDOW)
    assert (plan.why, plan.next_at, plan.due) == ("keep-alive", max(moment, START + timedelta(hours=2) - WINDOW),
                                                  False)
    clock.now = moment + timedelta(seconds=1) if moment > clock.now else clock.now + timedelta(days=1)
    assert "Idle" in due_now()
    assert selectors.plan(busy, within=WINDOW).why == "in use"


# --------------------------------------------------------------------------
# The product's use, recorded off the request's path
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_request_that_uses_a_grant_writes_nothing_before_its_response_and_one_update_after(clock):
    account = ALMAccount.objects.create(name="Core", base_url="https://jira.example.com", client_id="c",
                                        status=GrantStatus.CONNECTED, refresh_token="RT", access_token="AT",
                                        connected_at=START, token_expires_at=START + timedelta(hours=1))
    # As Django's test client does: close_old_connections would end the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        request_started.send(sender=None)
        with CaptureQueriesContext(connection) as during:
            for _ in range(3):
                assert services.valid_access_token(account=account) == "AT"
        with CaptureQueriesContext(connection) as after:
            request_finished.send(sender=None)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert during.captured_queries == [], "nothing on the request's critical path"
    assert len(updates_of(after)) == 1 and len(after.captured_queries) == 1, after.captured_queries
    account.refresh_from_db()
    assert account.last_used_at == START


@pytest.mark.django_db
def test_a_grant_used_all_the_time_is_written_at_most_once_every_few_minutes(clock):
    account = ALMAccount.objects.create(name="Core", base_url="https://jira.example.com", client_id="c",
                                        status=GrantStatus.CONNECTED, refresh_token="RT", access_token="AT",
                                        connected_at=START, token_expires_at=START + timedelta(hours=3))
    written = []
    for minute in range(0, 21):
        clock.now = START + timedelta(minutes=minute)
        stale = ALMAccount.objects.get(pk=account.pk) if minute % 2 else account  # a caller's old copy, too
        with CaptureQueriesContext(connection) as captured:
            services.valid_access_token(account=stale)  # outside a request: written at once
        written += [minute] * len(updates_of(captured))
    assert written == [0, 5, 10, 15, 20]
    account.refresh_from_db()
    assert account.last_used_at == START + timedelta(minutes=20)


@pytest.mark.django_db(transaction=True)
def test_an_idle_grant_the_product_needs_is_refreshed_on_demand_and_counts_as_in_use(fake_jira, clock):
    fake_jira.clock = clock.seconds
    account = connect_account(fake_jira, "Core", expires_in=timedelta(hours=-5), last_used_at=None)  # idle
    token = services.valid_access_token(account=account)
    assert token == fake_jira.current_tokens(grant_key(account))[0]
    account.refresh_from_db()
    assert account.last_used_at == START
    assert selectors.plan(account, within=WINDOW).why == "in use"
    day = RefreshDay.objects.get(grant_kind="account", grant_id=account.pk)
    assert (day.successes, day.keepalives, day.failures) == (1, 0, 0)


# --------------------------------------------------------------------------
# Each refresh's day
# --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_each_refresh_adds_itself_to_its_grants_day(fake_jira, clock):
    fake_jira.clock = clock.seconds
    fake_jira.latency = 0.05
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5), last_used_at=None)
    ref = GrantRef.of(account)
    fake_jira.token_outage()
    assert services.refresh_grant(grant=ref, actor="t").outcome is RefreshOutcome.FAILED
    fake_jira.outage = None
    for _ in range(2):  # the recovery, then a routine refresh
        assert services.refresh_grant(grant=ref, actor="t").outcome is RefreshOutcome.REFRESHED
    clock.now += timedelta(days=1)
    assert services.refresh_grant(grant=ref, actor="t").outcome is RefreshOutcome.REFRESHED
    days = list(RefreshDay.objects.filter(grant_id=account.pk).order_by("day").values_list(
        "day", "successes", "failures", "recoveries", "keepalives"))
    # Forced refreshes of an idle grant: asked for, not keep-alives.
    assert days == [(START.date(), 2, 1, 1, 0), ((START + timedelta(days=1)).date(), 1, 0, 0, 0)]
    first = RefreshDay.objects.get(grant_id=account.pk, day=START.date())
    assert first.latency_ms_max >= 50 and first.latency_ms_total >= 150


# --------------------------------------------------------------------------
# Days of refresher passes, the app's clock moved
# --------------------------------------------------------------------------


def one_pass() -> Counter:
    out = io.StringIO()
    report = Report(stdout=OutputWrapper(out), stderr=OutputWrapper(io.StringIO()), style=no_style(), verbosity=1)
    main(Options(concurrency=1), report=report)
    return Counter(line.split(": ", 1)[1].split(" — ")[0] for line in out.getvalue().splitlines()
                   if ": " in line and not line.startswith("Summary"))


@pytest.mark.django_db(transaction=True)
def test_five_days_of_passes_keep_idle_grants_alive_on_keepalives_and_grants_in_use_fresh(fake_jira, clock, settings):
    """Every 5 minutes of five simulated days, a refresher pass; every hour the product uses two grants. Jira's
    refresh tokens die after 3 days without a refresh here (Data Center: 90): idle grants live on one keep-alive a
    day; a grant in use is never found expired when used; a grant killed in Jira is flagged (and alerted) within
    one keep-alive interval when idle, within its token's life when in use."""
    settings.REFRESH_ACTIVE_WITHIN_HOURS = settings.REFRESH_IDLE_KEEPALIVE_HOURS = 24
    settings.REFRESHER_INTERVAL_SECONDS = 300
    fake_jira.clock = clock.seconds
    fake_jira.refresh_token_lifetime = 3 * 24 * 3600
    busy = [connect_account(fake_jira, name, expires_in=timedelta(hours=1), last_used_at=None)
            for name in ("Busy", "Busy doomed")]
    quiet = [connect_account(fake_jira, f"Quiet {i}", expires_in=timedelta(hours=1), last_used_at=None)
             for i in range(4)]
    doomed = connect_account(fake_jira, "Quiet doomed", expires_in=timedelta(hours=1), last_used_at=None)
    kills = {doomed.name: START + timedelta(days=1, hours=13), "Busy doomed": START + timedelta(days=3, hours=8)}
    flagged = {}
    for account in busy:  # in use from the start
        services.valid_access_token(account=account)
    step = timedelta(seconds=settings.REFRESHER_INTERVAL_SECONDS)
    while clock.now < START + timedelta(days=5):
        clock.now += step
        for name, at in kills.items():
            if at <= clock.now < at + step:
                fake_jira.kill(name)
        if clock.now.minute < 5:  # the product, every hour: the two grants in use
            for account in ALMAccount.objects.filter(name__startswith="Busy", status=GrantStatus.CONNECTED):
                if account.name in kills and clock.now >= kills[account.name]:
                    continue
                assert account.token_expires_at > clock.now + timedelta(minutes=1), (account.name, clock.now)
                services.valid_access_token(account=account)
        one_pass()
        for name in kills:
            if name not in flagged and ALMAccount.objects.get(name=name).status == GrantStatus.NEEDS_REAUTHORIZATION:
                flagged[name] = clock.now

    assert not fake_jira.expired, "no refresh token outlived Jira's lifetime"
    for account in quiet + busy[:1]:
        assert fake_jira.is_live(grant_key(account)), account.name
    for account in quiet:
        refreshes = fake_jira.refreshes[grant_key(account)]
        assert 4 <= refreshes <= 6, (account.name, refreshes)  # one a day
        days = RefreshDay.objects.filter(grant_id=account.pk).aggregate(s=Sum("successes"), k=Sum("keepalives"))
        assert days == {"s": refreshes, "k": refreshes}, "kept alive only"
    busy_refreshes = fake_jira.refreshes[grant_key(busy[0])]
    assert busy_refreshes >= 5 * 24 / 2, busy_refreshes  # fresh: before every expiry (2 h tokens)
    assert not RefreshDay.objects.filter(grant_id=busy[0].pk, keepalives__gt=0).exists()
    assert flagged.keys() == kills.keys(), flagged
    keepalive = timedelta(hours=settings.REFRESH_IDLE_KEEPALIVE_HOURS)
    assert flagged[doomed.name] - kills[doomed.name] <= keepalive + step
    assert flagged["Busy doomed"] - kills["Busy doomed"] <= timedelta(hours=2) + step
    broken = set(Alert.objects.filter(event=Alert.Event.BROKEN).values_list("account_name", flat=True))
    assert broken == set(kills)


# --------------------------------------------------------------------------
# What the metrics and the refresher's summary count
# --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_metrics_count_grants_in_use_and_idle_and_the_refreshes_each_needed(fake_jira, clock):
    from alm_accounts.health import DeploymentCollector

    fake_jira.clock = clock.seconds
    busy, quiet, other = (connect_account(fake_jira, name, expires_in=timedelta(minutes=5), last_used_at=None)
                          for name in ("Busy", "Quiet", "Other"))
    services.valid_access_token(account=busy)
    for account in (busy, quiet):  # as the refresher refreshes them: due within its window
        assert services.refresh_grant(grant=GrantRef.of(account), actor="t", due_within=WINDOW).outcome is \
            RefreshOutcome.REFRESHED
    families = {family.name: family for family in DeploymentCollector(now=clock.now).collect()}
    by_use = {(s.labels["kind"], s.labels["use"]): s.value for s in families["kendis_grants_by_use"].samples}
    assert by_use == {("account", "in_use"): 1, ("account", "idle"): 2, ("user", "in_use"): 0, ("user", "idle"): 0}
    today = {(s.labels["kind"], s.labels["reason"]): s.value
             for s in families["kendis_token_refreshes_today"].samples}
    assert today == {("account", "in_use"): 1, ("account", "keep_alive"): 1, ("user", "in_use"): 0,
                     ("user", "keep_alive"): 0}


@pytest.mark.django_db(transaction=True)
def test_the_refreshers_summary_says_how_many_refreshes_kept_grants_fresh_and_how_many_kept_idle_ones_alive(
        fake_jira, clock):
    fake_jira.clock = clock.seconds
    busy, quiet = (connect_account(fake_jira, name, expires_in=timedelta(minutes=5), last_used_at=None)
                   for name in ("Busy", "Quiet"))
    services.valid_access_token(account=busy)
    out = io.StringIO()
    report = Report(stdout=OutputWrapper(out), stderr=OutputWrapper(io.StringIO()), style=no_style(), verbosity=1)
    assert main(Options(concurrency=1), report=report) == 0
    summary = [line for line in out.getvalue().splitlines() if line.startswith("Summary: ")]
    assert summary and "2 refreshed (2 account connections, 0 user credentials" in summary[0], out.getvalue()
    assert "Of the refreshes: 1 for a grant in use, 1 keep-alive of an idle grant." in summary[0], summary[0]
