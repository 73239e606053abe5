"""The refresher paces each Jira (issue 21): at most a few token requests in flight per Jira host, across the
run's threads and worker processes, while the rest of --concurrency serves other Jiras; the hosts take turns.

Jira Data Center takes one cluster-wide lock per refresh (10 s wait): refreshes beyond a few in flight only queue
there, and one customer with thousands of people must not hold the run while other customers' tokens expire.

The pacer itself and the order are tested on any database; the limits with threads and with worker processes
need PostgreSQL (SQLite refreshes one at a time) and skip locally without it (fail with CI=true).
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management.base import OutputWrapper
from django.core.management.color import no_style

from alm_accounts.models import ALMAccount, RefresherRun
from alm_accounts.providers import provider_for
from alm_accounts.refresher import run as run_module
from alm_accounts.refresher.pacing import Pacer, TokenHost
from alm_accounts.refresher.report import Report
from alm_accounts.services import RefreshOutcome, RefreshResult
from tests.doubles.fake_jira import CLOUD_AUTH_PREFIX, PREFIX, FakeJira
from tests.factories import AccountFactory

REPO_ROOT = Path(__file__).resolve().parents[1]
PROCESS_TIMEOUT_SECONDS = 300  # only reached when something is broken
CLOUD_APP = ("pacing-cloud-app", "CLOUDSECRET-pacing-1a2b")


def grants(host: TokenHost, *names: str) -> list[tuple]:
    return [("account", i, name, host) for i, name in enumerate(names)]


def take_all(pacer: Pacer) -> list[str]:
    """Names in the order handed out, each refresh ending at once."""
    order = []
    while (item := pacer.take()) is not None:
        order.append(item[2])
        pacer.done(item)
    return order


# --------------------------------------------------------------------------
# The pacer: turns and limits
# --------------------------------------------------------------------------


def test_the_jiras_take_turns_and_each_keeps_its_most_urgent_first():
    big, small, cloud = TokenHost("https://big.example.com", 4), TokenHost("https://small.example.com", 4), \
        TokenHost("https://auth.atlassian.com", 8)
    # The list as selection streams it: the most urgent first, the big customer's grants ahead of the others.
    listed = [*grants(big, "big-1", "big-2", "big-3"), *grants(small, "small-1"), *grants(big, "big-4"),
              *grants(cloud, "cloud-1", "cloud-2"), *grants(small, "small-2")]

    assert take_all(Pacer(iter(listed))) == ["big-1", "small-1", "cloud-1", "big-2", "small-2", "cloud-2", "big-3",
                                             "big-4"]


def test_a_jira_at_its_limit_waits_while_the_others_start():
    big, other = TokenHost("https://big.example.com", 2), TokenHost("https://other.example.com", 2)
    listed = [*grants(big, *(f"big-{i}" for i in range(6))), *grants(other, "other-1", "other-2", "other-3")]
    pacer = Pacer(iter(listed))

    started = [pacer.take() for _ in range(4)]
    assert [item[2] for item in started] == ["big-0", "other-1", "big-1", "other-2"]
    assert pacer.take() is None  # both at their limit: nothing starts until one ends
    pacer.done(started[0])  # a big-customer refresh ended
    assert pacer.take()[2] == "big-2"
    assert pacer.take() is None
    assert dict(pacer.peak) == {big: 2, other: 2}


def test_the_pacer_reads_the_list_only_a_bounded_way_ahead():
    """A host with more due grants than the look-ahead: the pacer never holds more than that many."""
    big = TokenHost("https://big.example.com", 2)
    read = []

    def listed():
        for i in range(1000):
            read.append(i)
            yield ("account", i, f"big-{i}", big)

    pacer = Pacer(listed(), read_ahead=10, lookahead=50)
    first = [pacer.take(), pacer.take()]
    assert pacer.take() is None
    assert len(read) == 52  # 2 handed out, 50 held while it looked for another Jira's grant; no further
    pacer.done(first[0])
    third = pacer.take()
    assert third[2] == "big-2"
    assert len(read) == 52  # what it holds is enough: nothing more read
    pacer.done(first[1])
    pacer.done(third)
    assert len(take_all(pacer)) == 1000 - 3 and pacer.exhausted


def test_a_pacer_asked_only_to_fill_a_queue_reads_no_further_than_its_read_ahead():
    """Every grant held waits for its Jira, but no thread would be idle (idle=False): nothing more is read; the
    same question with a thread idle reads on for another Jira's grant."""
    big, other = TokenHost("https://big.example.com", 2), TokenHost("https://other.example.com", 2)
    read = []

    def listed():
        for i in range(100):
            read.append(i)
            yield ("account", i, f"big-{i}", big)
        yield ("account", 100, "other-0", other)

    pacer = Pacer(listed(), read_ahead=10, lookahead=500)
    first = [pacer.take(idle=False), pacer.take(idle=False)]
    assert pacer.take(idle=False) is None
    assert len(read) == 12  # the 2 handed out and 10 held: the read-ahead
    assert pacer.take(idle=True)[2] == "other-0"  # a thread would be idle: read on until another Jira's grant
    assert len(read) == 100
    pacer.done(first[0])
    assert pacer.take(idle=False)[2] == "big-2"


def test_a_run_whose_jira_is_at_its_limit_does_not_read_the_list_ahead_while_its_threads_are_busy(monkeypatch):
    """One Jira's grants fill the run's threads up to the Jira's limit: the run hands the next grant out when one
    ends, having read only the pacer's read-ahead beyond it, not the whole list at its start (held in memory, and
    the rows read along for each grant, selection.ReadAlongBatches, too old to be used when its turn comes)."""
    big = TokenHost("https://big.example.com", 2)
    read, read_when_handed_out = [], []

    def listed():
        for i in range(120):
            read.append(i)
            yield ("account", i, f"big-{i}", big)

    class BusyWorkers:
        """Stands in for the worker processes (the engine's seam): each refresh ends a moment after it was handed
        out."""

        def __init__(self, *, processes, concurrency):
            assert (processes, concurrency) == (2, 2)

        def submit(self, kind, pk, name, due_within, read_along=None):
            read_when_handed_out.append(len(read))
            future = Future()
            ended = RefreshResult(pk, name, RefreshOutcome.REFRESHED, kind=kind)
            threading.Timer(0.002, future.set_result, [ended]).start()
            return future

        def shutdown(self):
            pass

    monkeypatch.setattr(run_module, "WorkerPool", BusyWorkers)
    report = Report(stdout=OutputWrapper(io.StringIO()), stderr=OutputWrapper(io.StringIO()), style=no_style(),
                    verbosity=0)
    run = run_module.Run(stop=run_module.Stop(), report=report, effects=run_module.Effects(), concurrency=2,
                         processes=2, accounts=[], due_within=None, dry_run=False, mode=RefresherRun.Mode.ONCE)

    results = list(run.refresh(Pacer(listed(), read_ahead=10, lookahead=1000)))

    assert [result.account_name for result in results[:3]] == ["big-0", "big-1", "big-2"]
    assert len(results) == 120 and all(result.outcome == RefreshOutcome.REFRESHED for result in results)
    # When the n-th grant was handed out, at most the read-ahead beyond it had been read.
    assert max(count - handed for handed, count in enumerate(read_when_handed_out)) <= 10 + 1, read_when_handed_out


# --------------------------------------------------------------------------
# Which host a grant's token request goes to: the provider says
# --------------------------------------------------------------------------


def test_a_data_center_grant_is_paced_by_its_base_url_host_and_every_cloud_grant_by_atlassians(settings):
    settings.REFRESH_CONCURRENCY_PER_JIRA, settings.REFRESH_CONCURRENCY_ATLASSIAN = 3, 12
    settings.ATLASSIAN_AUTH_URL = "https://auth.atlassian.com"
    cloud = ALMAccount.Authentication.JIRA_CLOUD_OAUTH2
    jira = ALMAccount(base_url="https://Jira.Example.com/jira")
    same_jira = ALMAccount(base_url="https://jira.example.com:443/other-context")
    other_port = ALMAccount(base_url="https://jira.example.com:8443/jira")
    sites = [ALMAccount(authentication=cloud, base_url=f"https://site-{i}.atlassian.net") for i in range(2)]
    own_app = ALMAccount(authentication=cloud, base_url="https://own.atlassian.net", client_id="own-app")

    def host(account):
        provider = provider_for(account)
        return provider.token_host(account), provider.token_requests_at_once()

    assert host(jira) == host(same_jira) == ("https://jira.example.com", 3)
    assert host(other_port) == ("https://jira.example.com:8443", 3)
    assert {host(account) for account in [*sites, own_app]} == {("https://auth.atlassian.com", 12)}


@pytest.mark.django_db(transaction=True)
def test_the_refresher_serves_the_jiras_in_turn_the_most_urgent_first(fake_jira, run_command):
    """One customer's Jira has the most urgent grants; another Jira's grants are not left until all of them are
    done: the run alternates (here one refresh at a time, so the order shows)."""
    other = fake_jira.another_host()
    for i in range(5):
        AccountFactory(name=f"Big {i}", jira=fake_jira, expires_in=timedelta(minutes=1 + i))
    for i in range(2):
        AccountFactory(name=f"Other {i}", jira=fake_jira, base_url=f"{other}{PREFIX}",
                       expires_in=timedelta(minutes=10 + i))

    run = run_command("--concurrency", "1", "-v", "1")

    assert run.code == 0, run
    order = [line.split(":")[0] for line in run.lines if ": refreshed — " in line]
    assert order == ["Big 0", "Other 0", "Big 1", "Other 1", "Big 2", "Big 3", "Big 4"]


@pytest.mark.django_db
def test_a_limit_per_jira_out_of_range_is_refused(run_command):
    run = run_command("--per-jira", "65")
    assert run.code == 2 and "--per-jira must be between 1 and 64." in run.err, run


# --------------------------------------------------------------------------
# The limits with threads and with worker processes (PostgreSQL)
# --------------------------------------------------------------------------


def big_customer_and_others(fake: FakeJira, *, big: int, others: int, per_other: int) -> tuple[str, list[str]]:
    """`big` due accounts on the fake's own host (the most urgent), and `per_other` on each of `others` more hosts;
    (the big host, the other hosts), as scheme://host:port."""
    big_host = fake.base_url.removesuffix(PREFIX)
    for i in range(big):
        AccountFactory(name=f"Big {i:02}", jira=fake, expires_in=timedelta(minutes=1))
    hosts = [fake.another_host() for _ in range(others)]
    for h, host in enumerate(hosts):
        for i in range(per_other):
            AccountFactory(name=f"Other {h}-{i}", jira=fake, base_url=f"{host}{PREFIX}",
                           expires_in=timedelta(minutes=2))
    return big_host, hosts


def assert_paced(fake: FakeJira, big_host: str, others: list[str], limit: int, run_out: str):
    assert fake.rejected == [] and fake.unexpected == [], (fake.rejected + fake.unexpected)[:5]
    assert set(fake.refreshes.values()) == {1}
    peaks = fake.max_token_in_flight_per_host
    assert peaks[big_host] == limit, dict(peaks)  # reached, never passed
    assert all(peaks[host] <= limit for host in others), dict(peaks)
    # Meanwhile the other Jiras proceeded: another Jira's request in flight beside the big customer's full share
    # (whichever arrived last: which one that is depends on the threads' timing)...
    assert any(counts.get(big_host) == limit and any(counts.get(host) for host in others)
               for counts in fake.token_in_flight_by_host_log), fake.token_in_flight_by_host_log[:20]
    # ...and were done long before the big customer's last refresh, not queued behind it.
    hosts_in_order = [host for host, _, _ in fake.token_in_flight_log]
    last_other = max(i for i, host in enumerate(hosts_in_order) if host != big_host)
    assert last_other < hosts_in_order.count(big_host), hosts_in_order
    assert f"Paced to at most {limit} token requests in flight per Jira host; the most at once: {big_host} " \
           f"{limit}" in run_out, run_out


@pytest.mark.postgres
@pytest.mark.usefixtures("postgresql_only")
@pytest.mark.django_db(transaction=True)
def test_one_run_keeps_each_jira_to_its_limit_while_its_threads_serve_the_others(run_command, settings):
    """--per-jira 2 (instead of REFRESH_CONCURRENCY_PER_JIRA, 4 here) with 8 threads in one process."""
    settings.REFRESH_CONCURRENCY_PER_JIRA = 4
    with FakeJira(latency=0.05) as fake:
        big_host, others = big_customer_and_others(fake, big=16, others=3, per_other=3)

        run = run_command("--concurrency", "8", "--per-jira", "2")

        assert run.code == 0, run
        assert_paced(fake, big_host, others, 2, run.summary)


@pytest.mark.postgres
@pytest.mark.usefixtures("postgresql_only")
@pytest.mark.django_db(transaction=True)
def test_every_jira_cloud_site_counts_as_one_host_atlassians_token_endpoint(run_command, settings):
    """Cloud grants of many sites all go to Atlassian's token endpoint: one host, its own limit."""
    settings.REFRESH_CONCURRENCY_PER_JIRA, settings.REFRESH_CONCURRENCY_ATLASSIAN = 2, 3
    with FakeJira(latency=0.05) as fake:
        auth = fake.another_host()
        settings.ATLASSIAN_AUTH_URL = f"{auth}{CLOUD_AUTH_PREFIX}"
        for i in range(12):
            AccountFactory(name=f"Site {i:02}", provider="cloud", jira=fake, base_url=f"https://site-{i}.atlassian.net",
                           client_id=CLOUD_APP[0], client_secret=CLOUD_APP[1], expires_in=timedelta(minutes=1))
        for i in range(6):
            AccountFactory(name=f"DC {i}", jira=fake, expires_in=timedelta(minutes=2))

        run = run_command("--concurrency", "8")

        assert run.code == 0, run
        assert fake.rejected == [] and len(fake.refreshes) == 18, fake.rejected[:5]
        peaks = fake.max_token_in_flight_per_host
        assert peaks[auth] == 3 and peaks[fake.base_url.removesuffix(PREFIX)] == 2, dict(peaks)
        assert f"{auth} 3" in run.summary, run.summary


@pytest.mark.postgres
@pytest.mark.usefixtures("postgresql_only")
def test_the_limit_holds_across_worker_processes(shared_database):
    """refresh_tokens --processes 2: the main process hands out the grants, so two workers together still send at
    most the limit to one Jira, and fill the rest of the concurrency with the other Jiras."""
    with FakeJira(latency=0.05) as fake:
        big_host, others = big_customer_and_others(fake, big=24, others=4, per_other=3)
        env = {**shared_database, "REFRESH_CONCURRENCY_PER_JIRA": "2"}

        done = subprocess.run([sys.executable, "manage.py", "refresh_tokens", "--concurrency", "8", "--processes",
                               "2"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=PROCESS_TIMEOUT_SECONDS)

        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        (summary,) = [line for line in done.stdout.splitlines() if line.startswith("Summary: ")]
        assert "concurrency 8 in 2 processes)." in summary, summary
        assert_paced(fake, big_host, others, 2, summary)
