"""Issue 21, part 3 - Atlassian's quotas and the gateway's answers: rate-limit headers read (the wait asked for,
the limit named, the limit near), counted in /metrics, never waited past a caller's deadline, never costing a
refresh; and an access token Atlassian's gateway refuses with 403/404 refreshed and the call retried once.

Unit-level with `responses`; the pauses jira_request takes are recorded instead of slept (jira_calls.sleep), and
our clock for "is this token expired?" is jira_calls.now.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from django.db import OperationalError
from django.utils import timezone

from alm_accounts import jira, rate_limits, services
from alm_accounts.models import ALMAccount, AuthEvent, RateLimitCount
from alm_accounts.services import grants, jira_calls
from alm_accounts.services import rate_limits as rate_limits_service
from alm_accounts.services.grants import GrantRef
from tests.conftest import ACCESS_TOKEN, CLOUD_BASE, JIRA, MYSELF_URL, PROVIDERS, REFRESH_TOKEN, metric_samples
from tests.factories import CredentialFactory

Status = ALMAccount.Status
QUOTA_WORDS = "Atlassian rate limit: jira-quota-tenant-based (the app's hourly points quota on this site)"
CLOUD_ISSUE_URL = f"{CLOUD_BASE}/rest/api/3/issue/CB-1"
NO_SUCH_ISSUE = {"errorMessages": ["Issue does not exist or you do not have permission to see it."]}


@pytest.fixture
def waits(monkeypatch):
    """The pauses jira_request takes (recorded instead of slept)."""
    recorded: list[float] = []
    monkeypatch.setattr(jira_calls, "sleep", recorded.append)
    return recorded


def myself_path(provider) -> str:
    return "/rest/api/3/myself" if provider.name == "cloud" else jira.MYSELF_PATH


def get_myself(account, provider, **options):
    return services.jira_request(account=account, method="GET", path=myself_path(provider), **options)


def in_seconds(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)



# --------------------------------------------------------------------------
# How long to wait: Retry-After (seconds, HTTP date), X-RateLimit-Reset; bounded; within the deadline
# --------------------------------------------------------------------------


def test_retry_after_in_seconds_is_waited_on_either_provider(db, provider, provider_account, mocked_jira, waits):
    mocked_jira.get(provider.myself_url, status=429, json={}, headers={"Retry-After": "5"})
    mocked_jira.get(provider.myself_url, json=provider.me)

    assert get_myself(provider_account, provider) == provider.me
    assert waits == [5.0]


def test_retry_after_given_as_an_http_date_is_waited_until_that_moment(db, provider, provider_account, mocked_jira,
                                                                      waits):
    mocked_jira.get(provider.myself_url, status=429, json={},
                    headers={"Retry-After": format_datetime(in_seconds(12), usegmt=True)})
    mocked_jira.get(provider.myself_url, json=provider.me)

    assert get_myself(provider_account, provider) == provider.me
    assert len(waits) == 1 and 9 <= waits[0] <= 12  # the date has a one-second resolution


def test_without_retry_after_atlassians_x_ratelimit_reset_says_how_long(connected_cloud_account, mocked_jira, waits):
    provider_url = f"{CLOUD_BASE}/rest/api/3/myself"
    reset = in_seconds(20).strftime("%Y-%m-%dT%H:%M:%SZ")  # ISO 8601, as Atlassian sends it
    mocked_jira.get(provider_url, status=429, json={}, headers={"X-RateLimit-Reset": reset})
    mocked_jira.get(provider_url, json={"accountId": "x"})

    services.jira_request(account=connected_cloud_account, method="GET", path="/rest/api/3/myself")

    assert len(waits) == 1 and 17 <= waits[0] <= 20


def test_a_reset_far_away_is_not_waited_out_and_the_error_says_how_long_and_which_limit(connected_cloud_account,
                                                                                       mocked_jira, waits):
    reset = in_seconds(600).strftime("%Y-%m-%dT%H:%M:%SZ")
    mocked_jira.get(CLOUD_ISSUE_URL, status=429, json={},
                    headers={"X-RateLimit-Reset": reset, "RateLimit-Reason": "jira-quota-tenant-based"})

    with pytest.raises(services.JiraRequestError) as failed:
        services.jira_request(account=connected_cloud_account, method="GET", path="/rest/api/3/issue/CB-1")

    assert waits == []
    assert len(mocked_jira.calls) == 1
    assert failed.value.status == 429 and 590 <= failed.value.retry_after <= 600
    assert "longer than the 30 s this call waits" in str(failed.value)
    assert QUOTA_WORDS in str(failed.value)


def test_a_reset_is_never_waited_past_the_callers_deadline(connected_cloud_account, mocked_jira, waits):
    reset = in_seconds(20).strftime("%Y-%m-%dT%H:%M:%SZ")
    mocked_jira.get(CLOUD_ISSUE_URL, status=429, json={}, headers={"X-RateLimit-Reset": reset})

    with pytest.raises(services.JiraRequestError, match="the call's 10 s budget is spent"):
        services.jira_request(account=connected_cloud_account, method="GET", path="/rest/api/3/issue/CB-1",
                              deadline=jira.Deadline(10))

    assert waits == []
    assert len(mocked_jira.calls) == 1


# --------------------------------------------------------------------------
# Which limit was hit: in the error and the log
# --------------------------------------------------------------------------


def test_the_limit_atlassian_names_is_in_the_error_and_the_log(connected_cloud_account, mocked_jira, waits, caplog):
    mocked_jira.get(CLOUD_ISSUE_URL, status=429, json={"message": "Rate limit exceeded"},
                    headers={"Retry-After": "3600", "RateLimit-Reason": "jira-quota-tenant-based"})

    with caplog.at_level(logging.WARNING), pytest.raises(services.JiraRequestError) as failed:
        services.jira_request(account=connected_cloud_account, method="GET", path="/rest/api/3/issue/CB-1")

    assert str(failed.value).endswith(f"(Jira asks to wait 3600 s before trying again, longer than the 30 s this "
                                      f"call waits; try again later) [{QUOTA_WORDS}]")
    assert any(QUOTA_WORDS in record.getMessage() for record in caplog.records)
    assert ACCESS_TOKEN not in caplog.text and ACCESS_TOKEN not in str(failed.value)


# --------------------------------------------------------------------------
# Near the limit: the next calls to that host (and app) are spaced, never past a deadline
# --------------------------------------------------------------------------


NEAR = {"dc": {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "5"},  # Data Center: 5 % of the bucket left
        "cloud": {"X-RateLimit-NearLimit": "true"}}


def test_near_the_limit_the_next_call_waits_a_short_pause_but_never_past_its_deadline(
        db, provider, provider_account, mocked_jira, waits, settings):
    settings.JIRA_NEAR_LIMIT_PAUSE = 0.5
    mocked_jira.get(provider.myself_url, json=provider.me, headers=NEAR[provider.name])
    mocked_jira.get(provider.myself_url, json=provider.me)
    mocked_jira.get(provider.myself_url, json=provider.me)

    get_myself(provider_account, provider)
    assert waits == []  # the answer that said "near" came after the call
    get_myself(provider_account, provider)
    assert len(waits) == 1 and 0.4 <= waits[0] <= 0.5

    rate_limits.PACING.slow_down(jira_calls.client_for(provider_account).rate_limit_key, 0.5)  # near again
    get_myself(provider_account, provider, deadline=jira.Deadline(1.2))  # 0.5 s + a call's 1 s do not fit
    assert len(waits) == 1


def test_a_bucket_well_filled_is_not_near_its_limit(connected_account, mocked_jira, waits):
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin"},
                    headers={"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "60"})
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin"})

    for _ in range(2):
        services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH)

    assert waits == []


# --------------------------------------------------------------------------
# /metrics: rate-limited answers and near-limit signals per provider
# --------------------------------------------------------------------------


def test_metrics_count_rate_limited_answers_by_reason_and_near_limit_signals_per_provider(
        client, settings, connected_cloud_account, mocked_jira, waits):
    settings.JIRA_RETRY_BACKOFF = []
    mocked_jira.get(CLOUD_ISSUE_URL, status=429, json={},
                    headers={"Retry-After": "2", "RateLimit-Reason": "jira-burst-based"})
    mocked_jira.get(CLOUD_ISSUE_URL, json={"key": "CB-1"}, headers={"X-RateLimit-NearLimit": "true"})

    services.jira_request(account=connected_cloud_account, method="GET", path="/rest/api/3/issue/CB-1")
    found = metric_samples(client, settings)

    limited = "kendis_jira_rate_limited_responses_total"
    near = "kendis_jira_near_limit_responses_total"
    assert found[(limited, (("provider", "cloud"), ("reason", "jira-burst-based")))] == 1
    assert found[(near, (("provider", "cloud"),))] == 1
    assert found[(limited, (("provider", "datacenter"), ("reason", "unspecified")))] == 0
    assert found[(near, (("provider", "datacenter"),))] == 0


# --------------------------------------------------------------------------
# A 429 never costs a refresh
# --------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"error": "too_many_requests", "error_description": "Rate limited"}])
def test_a_429_on_a_token_refresh_leaves_the_grant_connected_and_intact(db, provider, provider_account, mocked_jira,
                                                                        settings, body, client):
    settings.JIRA_RETRY_BACKOFF = []
    mocked_jira.post(provider.token_url, status=429, json=body,
                     headers={"Retry-After": "60", "RateLimit-Reason": "jira-quota-tenant-based"})

    result = services.refresh_account(account_id=provider_account.pk, actor="test")

    provider_account.refresh_from_db()
    assert result.outcome is services.RefreshOutcome.RATE_LIMITED and not result.failed
    assert "asked to wait 60 s" in result.message
    assert (provider_account.status, provider_account.last_error, provider_account.failing_since) == (
        Status.CONNECTED, "", None)
    assert (provider_account.access_token, provider_account.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)
    assert not AuthEvent.objects.filter(kind=AuthEvent.Kind.REFRESH_FAILED).exists()
    label = "cloud" if provider.name == "cloud" else "datacenter"
    found = metric_samples(client, settings)
    assert found[("kendis_jira_rate_limited_responses_total",
                  (("provider", label), ("reason", "jira-quota-tenant-based")))] == 1


def test_a_call_whose_token_refresh_is_rate_limited_fails_saying_so_and_the_grant_stays_connected(
        db, provider, provider_account, mocked_jira, settings, waits):
    settings.JIRA_RETRY_BACKOFF = []
    provider_account.token_expires_at = timezone.now() + timedelta(seconds=30)  # due: refreshed before the call
    provider_account.save()
    mocked_jira.post(provider.token_url, status=429, json={}, headers={"Retry-After": "60"})
    mocked_jira.must_not_be_asked(mocked_jira.get(provider.myself_url, json=provider.me))  # the call is not made

    with pytest.raises(services.JiraRequestError, match="rate limiting") as failed:
        get_myself(provider_account, provider)

    assert failed.value.sent is False
    assert [call.request.url for call in mocked_jira.calls] == [provider.token_url]
    provider_account.refresh_from_db()
    assert (provider_account.status, provider_account.last_error) == (Status.CONNECTED, "")


# --------------------------------------------------------------------------
# Atlassian's gateway: 403/404 for an expired or invalid token
# --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 404])
def test_a_403_or_404_while_the_token_is_expired_by_our_clock_refreshes_once_and_retries(
        status, connected_cloud_account, mocked_jira, monkeypatch, waits):
    cloud = PROVIDERS["cloud"]
    # The token was valid when the call started; by the time the gateway answered, it had expired.
    later = timezone.now() + timedelta(minutes=10)
    monkeypatch.setattr(jira_calls, "now", lambda: later)
    mocked_jira.get(CLOUD_ISSUE_URL, status=status, json=NO_SUCH_ISSUE)
    cloud.refreshes(mocked_jira, 2)
    mocked_jira.get(CLOUD_ISSUE_URL, json={"key": "CB-1"})

    assert services.jira_request(account=connected_cloud_account, method="GET",
                                 path="/rest/api/3/issue/CB-1") == {"key": "CB-1"}

    urls = [call.request.url for call in mocked_jira.calls]
    assert urls == [CLOUD_ISSUE_URL, cloud.token_url, CLOUD_ISSUE_URL]
    assert mocked_jira.calls[2].request.headers["Authorization"] == "Bearer ACCESSTOKEN-2-e1d2c3b4"


@pytest.mark.parametrize("status, words", [(403, "The access token is invalid or expired"),
                                           (404, "Invalid OAuth 2.0 token")])
def test_a_403_or_404_saying_the_token_is_invalid_or_expired_refreshes_once_and_retries(
        status, words, connected_cloud_account, mocked_jira, waits):
    cloud = PROVIDERS["cloud"]
    mocked_jira.get(CLOUD_ISSUE_URL, status=status, json={"code": status, "message": words})
    cloud.refreshes(mocked_jira, 2)
    mocked_jira.get(CLOUD_ISSUE_URL, json={"key": "CB-1"})

    assert services.jira_request(account=connected_cloud_account, method="GET",
                                 path="/rest/api/3/issue/CB-1") == {"key": "CB-1"}
    assert len(cloud.token_requests(mocked_jira)) == 1


def test_the_same_refusal_right_after_the_refresh_is_an_error_and_refreshes_only_once(connected_cloud_account,
                                                                                       mocked_jira, waits):
    cloud = PROVIDERS["cloud"]
    refused = {"code": 403, "message": "The access token is invalid or expired"}
    mocked_jira.get(CLOUD_ISSUE_URL, status=403, json=refused)
    cloud.refreshes(mocked_jira, 2)
    mocked_jira.get(CLOUD_ISSUE_URL, status=403, json=refused)

    with pytest.raises(services.JiraRequestError) as failed:
        services.jira_request(account=connected_cloud_account, method="GET", path="/rest/api/3/issue/CB-1")

    assert failed.value.status == 403
    assert len(cloud.token_requests(mocked_jira)) == 1


def test_a_real_404_of_a_missing_issue_is_not_retried_and_costs_no_refresh(connected_cloud_account, mocked_jira,
                                                                           waits):
    mocked_jira.get(CLOUD_ISSUE_URL, status=404, json=NO_SUCH_ISSUE)

    with pytest.raises(services.JiraRequestError, match="HTTP 404 .Issue does not exist") as failed:
        services.jira_request(account=connected_cloud_account, method="GET", path="/rest/api/3/issue/CB-1")

    assert failed.value.status == 404
    assert len(mocked_jira.calls) == 1  # no token request, no second GET
    connected_cloud_account.refresh_from_db()
    assert connected_cloud_account.access_token == ACCESS_TOKEN


def test_data_center_keeps_401_only_a_404_is_a_404_even_with_an_expired_token(connected_account, mocked_jira,
                                                                              monkeypatch, waits):
    monkeypatch.setattr(jira_calls, "now", lambda: timezone.now() + timedelta(minutes=10))
    mocked_jira.get(f"{JIRA}/rest/api/2/issue/CB-1", status=404,
                    json={"errorMessages": ["Invalid token"]})

    with pytest.raises(services.JiraRequestError, match="HTTP 404"):
        services.jira_request(account=connected_account, method="GET", path="/rest/api/2/issue/CB-1")

    assert len(mocked_jira.calls) == 1


def test_a_token_endpoint_that_asked_to_wait_is_left_alone_meanwhile_by_every_grant_of_that_app(
        db, provider, provider_account, alice, mocked_jira, settings):
    """A refresher pass over many due grants of one Jira (or one Atlassian app) does not spend the quota on a 429
    each: after the first, the others are not sent until the wait asked for is over."""
    settings.JIRA_RETRY_BACKOFF = []
    credential = CredentialFactory(account=provider_account, user=alice, access_token="ALICE-AT-1",
                                   refresh_token="ALICE-RT-1")
    mocked_jira.post(provider.token_url, status=429, json={}, headers={"Retry-After": "60"})

    first = services.refresh_account(account_id=provider_account.pk, actor="test")
    second = services.refresh_grant(grant=GrantRef.of(credential), actor="test")

    assert first.outcome is second.outcome is services.RefreshOutcome.RATE_LIMITED
    assert "asked to be left alone 60 s more; nothing was sent" in second.message
    assert len(provider.token_requests(mocked_jira)) == 1
    credential.refresh_from_db()
    assert (credential.status, credential.last_error, credential.refresh_token) == (Status.CONNECTED, "",
                                                                                    "ALICE-RT-1")


def test_the_refresher_lists_a_rate_limited_refresh_apart_and_exits_0(
        transactional_db, provider, provider_account, mocked_jira, settings, run_command):
    """transactional_db: the refresher's own transactions see the rows."""
    settings.JIRA_RETRY_BACKOFF = []
    mocked_jira.post(provider.token_url, status=429, json={},
                     headers={"Retry-After": "30", "RateLimit-Reason": "jira-quota-global-based"})

    run = run_command("--force", "--concurrency", "1")

    assert run.code == 0, run.err
    assert "1 rate limited: tried again later" in run.out
    provider_account.refresh_from_db()
    assert (provider_account.status, provider_account.failing_since) == (Status.CONNECTED, None)


# --------------------------------------------------------------------------
# The counts are the deployment's: written to the database by whichever process met them, read by /metrics
# --------------------------------------------------------------------------

LIMITED_TOTAL = "kendis_jira_rate_limited_responses_total"
NEAR_TOTAL = "kendis_jira_near_limit_responses_total"


def test_the_refreshers_429s_are_in_the_metrics_of_a_web_process_that_never_saw_them(
        transactional_db, provider, provider_account, mocked_jira, settings, run_command, client):
    """transactional_db: the refresher's own transactions see the rows."""
    settings.JIRA_RETRY_BACKOFF = []
    mocked_jira.post(provider.token_url, status=429, json={},
                     headers={"Retry-After": "30", "RateLimit-Reason": "jira-quota-global-based"})

    assert run_command("--force", "--concurrency", "1").code == 0
    rate_limits.COUNTS.clear()  # /metrics is served by a web process: it never held what the refresher counted

    found = metric_samples(client, settings)
    label = "cloud" if provider.name == "cloud" else "datacenter"
    assert found[(LIMITED_TOTAL, (("provider", label), ("reason", "jira-quota-global-based")))] == 1


def test_counts_the_database_refuses_fail_no_call_are_logged_once_without_a_secret_and_are_written_later(
        client, settings, connected_cloud_account, mocked_jira, waits, monkeypatch, caplog):
    settings.JIRA_RETRY_BACKOFF = []
    mocked_jira.get(CLOUD_ISSUE_URL, status=429, json={},
                    headers={"Retry-After": "2", "RateLimit-Reason": "jira-burst-based"})
    mocked_jira.get(CLOUD_ISSUE_URL, json={"key": "CB-1"}, headers={"X-RateLimit-NearLimit": "true"})
    working = rate_limits_service.add_counts_to_database

    def database_down(pending):
        raise OperationalError('connection to server at "db.internal" (10.0.0.7), port 5432 failed: password '
                               'authentication failed for user "kendis" password=hunter2-db')

    monkeypatch.setattr(rate_limits_service, "add_counts_to_database", database_down)
    with caplog.at_level(logging.INFO):
        answer = services.jira_request(account=connected_cloud_account, method="GET", path="/rest/api/3/issue/CB-1")
        while_down = [metric_samples(client, settings) for _ in range(2)]  # each scrape tries to write them
        monkeypatch.setattr(rate_limits_service, "add_counts_to_database", working)
        once_up = metric_samples(client, settings)

    assert answer == {"key": "CB-1"}
    assert [found[(NEAR_TOTAL, (("provider", "cloud"),))] for found in while_down] == [0, 0]
    assert once_up[(LIMITED_TOTAL, (("provider", "cloud"), ("reason", "jira-burst-based")))] == 1
    assert once_up[(NEAR_TOTAL, (("provider", "cloud"),))] == 1
    refused = [r for r in caplog.records if r.levelno == logging.WARNING and "could not be written" in r.getMessage()]
    assert len(refused) == 1, caplog.text
    assert "OperationalError" in refused[0].getMessage()
    assert "hunter2" not in caplog.text and "db.internal" not in caplog.text and "10.0.0.7" not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_near_limit_signals_from_busy_threads_are_written_in_a_few_writes_and_none_is_lost(monkeypatch):
    """Every answer of a busy Jira near its limit says so: the calls only count in memory, and the writing thread
    adds them to the database at most once per interval, however many came meanwhile."""
    every, threads, per_thread = 0.2, 4, 500
    writes: list[int] = []
    working = rate_limits_service.add_counts_to_database

    def counted_write(pending):
        working(pending)
        writes.append(sum(number for number, _ in pending.values()))

    monkeypatch.setattr(rate_limits_service, "add_counts_to_database", counted_write)
    monkeypatch.setattr(rate_limits_service.COUNTS_WRITER, "every", every)
    monkeypatch.setattr(rate_limits_service.COUNTS_WRITER, "background", True)
    near = rate_limits.read({"X-RateLimit-NearLimit": "true"}, 200)

    def busy_calls():
        for _ in range(per_thread):
            rate_limits_service.counted("cloud", near)
            time.sleep(0.0005)  # a Jira answer takes a moment: the signals spread over a few intervals

    started = time.monotonic()
    workers = [threading.Thread(target=busy_calls) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    while sum(writes) < threads * per_thread and time.monotonic() - started < 30:
        time.sleep(0.05)
    elapsed = time.monotonic() - started

    assert RateLimitCount.objects.get(provider="cloud", signal="near_limit").count == threads * per_thread
    assert sum(writes) == threads * per_thread
    assert len(writes) <= elapsed / every + 1, (len(writes), elapsed)


# --------------------------------------------------------------------------
# Reading the headers (alm_accounts.rate_limits.read)
# --------------------------------------------------------------------------


NOW = datetime(2026, 3, 26, 16, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("headers, wait", [
    ({"Retry-After": "17"}, 17.0),
    ({"Retry-After": "Thu, 26 Mar 2026 16:00:45 GMT"}, 45.0),
    ({"X-RateLimit-Reset": "2026-03-26T16:02Z"}, 120.0),  # Atlassian's own format: to the minute
    ({"X-RateLimit-Reset": str(int(NOW.timestamp()) + 30)}, 30.0),  # a Unix time
    ({"X-RateLimit-Reset": "2026-03-26T15:00Z"}, None),  # already past: says nothing
    ({"Retry-After": "soon", "X-RateLimit-Reset": "nonsense"}, None),
    ({"Retry-After": "99999"}, 3600.0),  # capped: an absurd value is not repeated as it is
    ({"X-RateLimit-Reset": "9" * 20}, 3600.0),  # a Unix time past any calendar: capped, not an error
    ({"X-RateLimit-Reset": "9999-12-31T23:59:59Z"}, 3600.0),
])
def test_the_wait_a_429_asks_for(headers, wait):
    assert rate_limits.read(headers, 429, now=NOW).retry_after == wait


def test_the_limit_named_in_atlassians_header_or_its_beta_spelling_and_nothing_else():
    assert rate_limits.read({"RateLimit-Reason": "jira-burst-based"}, 429).reason == "jira-burst-based"
    assert rate_limits.read({"X-Beta-RateLimit-Reason": "jira-quota-tenant-based"}, 429).reason_label == \
        "jira-quota-tenant-based"
    assert rate_limits.read({"RateLimit-Reason": "<script>x</script>"}, 429).reason == "other"
    assert rate_limits.read({"RateLimit-Reason": "jira-new-limit"}, 429).reason_label == "other"
    assert rate_limits.read({}, 429).reason_label == "unspecified"
    assert rate_limits.read({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "60"}, 200) is None
    assert rate_limits.read({"X-Beta-RateLimit-NearLimit": "true"}, 200).near_limit


def test_a_refresh_waits_as_long_as_the_token_endpoint_asks_within_its_deadline(db, provider, provider_account,
                                                                                 mocked_jira, monkeypatch, settings):
    settings.JIRA_REFRESH_DEADLINE = 20.0
    pauses: list[float] = []
    monkeypatch.setattr(grants, "sleep", pauses.append)
    mocked_jira.post(provider.token_url, status=429, json={}, headers={"Retry-After": "3"})
    provider.refreshes(mocked_jira, 2)

    result = services.refresh_account(account_id=provider_account.pk, actor="test")

    assert result.outcome is services.RefreshOutcome.REFRESHED
    assert pauses == [3.0]


def test_a_refresh_never_waits_past_its_deadline_and_the_grant_is_left_as_it_was(db, provider, provider_account,
                                                                                 mocked_jira, monkeypatch, settings):
    settings.JIRA_REFRESH_DEADLINE = 20.0
    pauses: list[float] = []
    monkeypatch.setattr(grants, "sleep", pauses.append)
    mocked_jira.post(provider.token_url, status=429, json={}, headers={"Retry-After": "30"})

    result = services.refresh_account(account_id=provider_account.pk, actor="test")

    assert result.outcome is services.RefreshOutcome.RATE_LIMITED
    assert pauses == []
    assert len(provider.token_requests(mocked_jira)) == 1
