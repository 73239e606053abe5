"""Health and metrics (issue 13): /healthz and /readyz for load balancers, /metrics for Prometheus.

A load balancer probing the pod's IP over plain HTTP gets /healthz's "ok"
even where every other page redirects to HTTPS; /readyz also answers 503 when
the database does not (real: an unreachable PostgreSQL, a table lock outlasting
the statement timeout) or when grants depend on a refresher that stopped.
Prometheus scrapes /metrics with the bearer token (404 while METRICS_TOKEN is
unset, 401 otherwise) and reads grants by kind and status, the refresher's
last and recent runs, the earliest token expiry and the alerts waiting, in a
fixed number of queries. No answer names an account, a URL, a person or a host.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from alm_accounts.models import Alert, ALMAccount, RefresherRun
from tests.conftest import ROOT, run
from tests.doubles.servers import free_port, running_server
from tests.factories import AccountFactory, CredentialFactory

Status = ALMAccount.Status
TOKEN = "metrics-token-5d1f0b7e3a9c4e2f8b6d"
INTERVAL = 300  # REFRESHER_INTERVAL_SECONDS in these tests: stale after 15 minutes
# Distinctive words that must never appear in a probe's or the metrics' answer.
SECRET_NAME = "Zanzibar Treasury 7731"
SECRET_URL = "https://jira-zanzibar-7731.internal.example"
SECRET_PERSON = "quentin-zanzibar"
SECRET_JIRA_USER = "qzanzibar-jira"
SECRET_HOST = "refresher-host-zanzibar"
SECRETS = (SECRET_NAME, "Zanzibar", SECRET_URL, "jira-zanzibar", SECRET_PERSON, SECRET_JIRA_USER, SECRET_HOST,
           "ACCESSTOKEN-", "REFRESHTOKEN-")  # the tokens tests/factories.py gives


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.REFRESHER_INTERVAL_SECONDS = INTERVAL
    settings.METRICS_TOKEN = TOKEN


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------



def finished_run(ago: timedelta, *, outcome: str = "ok", took: timedelta = timedelta(seconds=4), host="worker-1",
                 **counts) -> RefresherRun:
    finished = timezone.now() - ago
    return RefresherRun.objects.create(started_at=finished - took, finished_at=finished, host=host, pid=4242,
                                       outcome=outcome, **counts)


def make_alert(*, email: str = Alert.Delivery.PENDING, webhook: str = Alert.Delivery.NOT_NEEDED,
               age: timedelta = timedelta(minutes=1)) -> Alert:
    return Alert.objects.create(created_at=timezone.now() - age, event=Alert.Event.BROKEN, account_name="x",
                                subject="s", message="m", email_state=email, webhook_state=webhook)


def scrape(client, **headers):
    return client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)


def samples(response) -> dict:
    """{(metric name, ((label, value), ...)): value} of a Prometheus text answer."""
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels):
    return found.get((name, tuple(sorted(labels.items()))))


def body(response) -> str:
    return response.content.decode()


# --------------------------------------------------------------------------
# /healthz
# --------------------------------------------------------------------------


def test_healthz_answers_a_plain_http_probe_although_https_is_enforced(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    # The redirect is really on: any other page answers plain HTTP with a 301 to https.
    other = client.get("/admin/login/")
    assert other.status_code == 301 and other["Location"].startswith("https://")

    response = client.get("/healthz")
    assert response.status_code == 200
    assert body(response) == "ok"
    assert response["Content-Type"].startswith("text/plain")
    assert "no-store" in response["Cache-Control"]
    assert client.head("/healthz").status_code == 200


def test_probes_answer_a_host_that_is_not_in_allowed_hosts(client, db):
    """A load balancer or kubelet addresses the pod by its IP: not a Host in ALLOWED_HOSTS."""
    assert client.get("/admin/login/", HTTP_HOST="10.1.2.3:8000").status_code == 400  # DisallowedHost elsewhere
    assert client.get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    response = client.get("/readyz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_probes_take_only_get_and_head(client, db):
    for path in ("/healthz", "/readyz"):
        response = client.post(path)
        assert response.status_code == 405
        assert response["Allow"] == "GET, HEAD"


def test_healthz_needs_no_database(client, db):
    def database_down(execute, sql, params, many, context):
        raise OperationalError("connection refused")

    with connection.execute_wrapper(database_down):
        response = client.get("/healthz")
    assert response.status_code == 200 and body(response) == "ok"


# --------------------------------------------------------------------------
# /readyz
# --------------------------------------------------------------------------


def test_readyz_without_grants_is_ready_even_if_no_refresher_ever_ran(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "seconds_since_last_refresh_run": None}
    assert "no-store" in response["Cache-Control"]


def test_readyz_is_ready_while_the_refresher_runs(client, db):
    AccountFactory(name="A")
    finished_run(timedelta(minutes=2))
    response = client.get("/readyz")
    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "ok"
    assert 119 <= answer["seconds_since_last_refresh_run"] <= 130


def test_readyz_says_refresher_stale_after_three_intervals_without_a_run(client, db):
    AccountFactory(name="A")
    run_ = finished_run(timedelta(minutes=14))
    assert client.get("/readyz").status_code == 200  # two intervals and more: not yet

    RefresherRun.objects.filter(pk=run_.pk).update(finished_at=timezone.now() - timedelta(minutes=16))
    response = client.get("/readyz")
    assert response.status_code == 503
    answer = response.json()
    assert answer["status"] == "refresher stale"
    assert 16 * 60 - 1 <= answer["seconds_since_last_refresh_run"] <= 16 * 60 + 10
    assert "no-store" in response["Cache-Control"]


def test_readyz_says_refresher_stale_when_grants_depend_on_one_that_never_ran(client, db):
    AccountFactory(name="A")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "refresher stale", "seconds_since_last_refresh_run": None}


def test_grants_nobody_refreshes_do_not_make_the_refresher_stale(client, db):
    """Not connected, needing re-authorization, or an inactive person's: the refresher has nothing to keep alive."""
    account = AccountFactory(name="A", status=Status.NOT_CONNECTED)
    AccountFactory(name="B", status=Status.NEEDS_REAUTHORIZATION)
    CredentialFactory(account=account, user__username="gone", user__is_active=False)
    assert client.get("/readyz").status_code == 200


def test_readyz_says_database_unavailable_when_the_database_fails(client, db, caplog, settings):
    settings.ADMINS = [("Ops", "ops@example.com")]

    def database_down(execute, sql, params, many, context):
        raise OperationalError('connection to server at "db-zanzibar.internal" failed: FATAL: user "kendis"')

    with caplog.at_level(logging.INFO), connection.execute_wrapper(database_down):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "database unavailable"}
    # One warning of our own, without the driver's message (it names hosts and users) ...
    warnings = [r.getMessage() for r in caplog.records if r.name == "alm_accounts.health"]
    assert warnings == ["Readiness: database unavailable (OperationalError)."]
    assert "zanzibar" not in caplog.text
    # ... and no ERROR from django.request, whose handler mails ADMINS: a probe every 10 s would flood them.
    assert not [r for r in caplog.records if r.name == "django.request"]


@pytest.mark.postgres
@pytest.mark.usefixtures("postgresql_only")
@pytest.mark.django_db(transaction=True)
def test_readyz_gives_up_on_a_database_that_does_not_answer(client):
    """A table locked by another session: readyz answers 503 after its statement timeout instead of hanging."""
    AccountFactory(name="A")
    finished_run(timedelta(minutes=1))
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        from django.db import connection as own_connection  # this thread's own session

        try:
            with transaction.atomic():
                with own_connection.cursor() as cursor:
                    cursor.execute(f"LOCK TABLE {RefresherRun._meta.db_table} IN ACCESS EXCLUSIVE MODE")
                locked.set()
                release.wait(30)  # without the timeout, readyz would wait this long, then answer 200
        finally:
            own_connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - started
    finally:
        release.set()
        holder.join()
    assert response.status_code == 503, body(response)
    assert response.json() == {"status": "database unavailable"}
    print(f"readyz answered 503 after {elapsed:.1f} s of a locked table")
    # The timeout was local to readyz's transaction: the next request on this connection is not limited by it.
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"
    assert client.get("/readyz").status_code == 200


# --------------------------------------------------------------------------
# nothing identifying in any answer
# --------------------------------------------------------------------------


def test_no_answer_names_an_account_a_url_a_person_or_a_host(client, db):
    account = AccountFactory(name=SECRET_NAME, base_url=SECRET_URL, client_id="zanzibar-client",
                             client_secret="s3cret", connected_as_name=SECRET_JIRA_USER, failing=True)
    CredentialFactory(account=account, user__username=SECRET_PERSON, status=Status.ERROR)
    Alert.objects.create(event=Alert.Event.BROKEN, account=account, account_name=SECRET_NAME, grant_owner=SECRET_PERSON,
                         subject=f"{SECRET_NAME} broke", message=SECRET_URL, link=SECRET_URL, recipients="a@b.c")
    run_ = finished_run(timedelta(minutes=1), host=SECRET_HOST, outcome="failed", tried=2, failed=1,
                        message=f"{SECRET_NAME}: failed")

    answers = {"healthz": client.get("/healthz"), "readyz": client.get("/readyz"), "metrics": scrape(client)}
    RefresherRun.objects.filter(pk=run_.pk).update(finished_at=timezone.now() - timedelta(hours=2))
    answers["readyz stale"] = client.get("/readyz")
    assert answers["readyz stale"].status_code == 503
    assert answers["metrics"].status_code == 200
    for what, response in answers.items():
        text = body(response) + " ".join(f"{k}: {v}" for k, v in response.items())
        for secret in SECRETS:
            assert secret.lower() not in text.lower(), f"{what} shows {secret!r}"


# --------------------------------------------------------------------------
# /metrics: who may read them
# --------------------------------------------------------------------------


def test_metrics_are_off_without_a_token(client, db, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 404


def test_metrics_without_a_token_ask_for_one(client, db):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert "kendis_" not in body(response)
    # Another scheme is no token either.
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401


@pytest.mark.parametrize("given", ["wrong-token-5d1f0b7e3a9c4e2f8b6d", TOKEN[:-1], TOKEN + "x", TOKEN.upper()])
def test_metrics_refuse_a_wrong_token(client, db, given):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {given}")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics", error="invalid_token"'
    assert "kendis_" not in body(response) and TOKEN not in body(response) and given not in body(response)


def test_metrics_stay_behind_https(client, db, settings):
    settings.SECURE_SSL_REDIRECT = True
    response = scrape(client)
    assert response.status_code == 301 and response["Location"] == "https://testserver/metrics"
    assert scrape(client, secure=True).status_code == 200
    # From inside, through the TLS proxy's header (SECURE_PROXY_SSL_HEADER, see README "Deploy").
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert scrape(client, HTTP_X_FORWARDED_PROTO="https").status_code == 200


def test_metrics_are_never_cached(client, db):
    assert "no-store" in scrape(client)["Cache-Control"]


# --------------------------------------------------------------------------
# /metrics: the numbers
# --------------------------------------------------------------------------


def test_metrics_count_grants_by_kind_status_and_health(client, db):
    core = AccountFactory(name="Core")
    AccountFactory(name="Payments")
    AccountFactory(name="Loans", failing=True)
    AccountFactory(name="Cards", status=Status.NEEDS_REAUTHORIZATION)
    AccountFactory(name="Treasury", status=Status.ERROR)
    AccountFactory(name="Not yet", status=Status.NOT_CONNECTED)
    CredentialFactory(account=core, user__username="alice")
    CredentialFactory(account=core, user__username="bob", status=Status.NEEDS_REAUTHORIZATION)
    CredentialFactory(account=core, user__username="carol", status=Status.ERROR)
    # connected, but an inactive person's: nobody refreshes it
    CredentialFactory(account=core, user__username="dave", user__is_active=False)

    found = samples(scrape(client))
    assert {status: value(found, "kendis_grants", kind="account", status=status)
            for status in Status.values} == {"not_connected": 1, "connected": 3, "needs_reauthorization": 1, "error": 1}
    assert {status: value(found, "kendis_grants", kind="user", status=status)
            for status in Status.values} == {"not_connected": 0, "connected": 2, "needs_reauthorization": 1, "error": 1}
    assert {health: value(found, "kendis_grants_health", kind="account", health=health)
            for health in ("connected", "needs_reauthorization", "failing")} == {
        "connected": 2, "needs_reauthorization": 1, "failing": 2}
    assert {health: value(found, "kendis_grants_health", kind="user", health=health)
            for health in ("connected", "needs_reauthorization", "failing")} == {
        "connected": 2, "needs_reauthorization": 1, "failing": 1}
    # Kept alive: holding a refresh token and not needing re-authorization (and an active person's).
    assert value(found, "kendis_grants_kept_alive", kind="account") == 4
    assert value(found, "kendis_grants_kept_alive", kind="user") == 2


def test_metrics_give_the_earliest_expiry_of_a_live_access_token(client, db):
    soon = AccountFactory(name="Soon", expires_in=timedelta(minutes=7))
    AccountFactory(name="Later", expires_in=timedelta(hours=2))
    # not counted: dead
    AccountFactory(name="Broken", status=Status.NEEDS_REAUTHORIZATION, expires_in=timedelta(minutes=-30))
    AccountFactory(name="Error", status=Status.ERROR, expires_in=timedelta(minutes=1))  # not connected: not counted
    # expired: the refresher is behind
    CredentialFactory(account=soon, user__username="alice", expires_in=timedelta(minutes=-3))
    # nobody refreshes it
    CredentialFactory(account=soon, user__username="gone", user__is_active=False, expires_in=timedelta(minutes=-90))

    before = time.time()
    found = samples(scrape(client))
    account_at = value(found, "kendis_access_token_earliest_expiry_timestamp_seconds", kind="account")
    assert abs(account_at - ALMAccount.objects.get(name="Soon").token_expires_at.timestamp()) < 0.01
    assert 7 * 60 - 10 <= value(found, "kendis_access_token_earliest_expiry_seconds", kind="account") <= 7 * 60
    assert -3 * 60 - 10 <= value(found, "kendis_access_token_earliest_expiry_seconds", kind="user") <= -3 * 60
    assert value(found, "kendis_access_token_earliest_expiry_timestamp_seconds", kind="user") < before


def test_without_a_connected_grant_the_expiry_is_absent(client, db):
    AccountFactory(name="Not yet", status=Status.NOT_CONNECTED)
    found = samples(scrape(client))
    assert not [key for key in found if key[0].startswith("kendis_access_token_earliest_expiry")]


def test_metrics_describe_the_last_and_the_recent_refresher_runs(client, db):
    AccountFactory(name="A")
    finished_run(timedelta(hours=3), outcome="crashed", tried=9, failed=9)  # too old to be recent
    finished_run(timedelta(minutes=50), outcome="failed", tried=5, refreshed=3, failed=1, needs_reauthorization=1)
    finished_run(timedelta(minutes=20), outcome="stopped", tried=2, refreshed=2)
    last = finished_run(timedelta(seconds=90), outcome="ok", tried=4, refreshed=4, took=timedelta(seconds=12))
    RefresherRun.objects.create(started_at=timezone.now(), host="worker-2", pid=1)  # running: not finished

    found = samples(scrape(client))
    assert 89 <= value(found, "kendis_refresher_seconds_since_last_run") <= 100
    assert abs(value(found, "kendis_refresher_last_run_finished_timestamp_seconds")
               - last.finished_at.timestamp()) < 0.01
    assert value(found, "kendis_refresher_last_run_duration_seconds") == 12
    assert {o: value(found, "kendis_refresher_last_run_outcome", outcome=o)
            for o in ("ok", "failed", "stopped", "crashed")} == {"ok": 1, "failed": 0, "stopped": 0, "crashed": 0}
    assert {r: value(found, "kendis_refresher_last_run_grants", result=r)
            for r in ("tried", "refreshed", "failed", "needs_reauthorization")} == {
        "tried": 4, "refreshed": 4, "failed": 0, "needs_reauthorization": 0}
    assert {o: value(found, "kendis_refresher_recent_runs", outcome=o)
            for o in ("ok", "failed", "stopped", "crashed")} == {"ok": 1, "failed": 1, "stopped": 1, "crashed": 0}
    assert {r: value(found, "kendis_refresher_recent_grants", result=r)
            for r in ("tried", "refreshed", "failed", "needs_reauthorization")} == {
        "tried": 11, "refreshed": 9, "failed": 1, "needs_reauthorization": 1}
    assert value(found, "kendis_refresher_stale") == 0
    assert value(found, "kendis_refresher_interval_seconds") == INTERVAL


def test_metrics_say_when_the_refresher_is_stale(client, db):
    AccountFactory(name="A")
    found = samples(scrape(client))
    assert value(found, "kendis_refresher_stale") == 1
    assert value(found, "kendis_refresher_seconds_since_last_run") == float("inf")  # none ever finished
    assert not [key for key in found if key[0].startswith("kendis_refresher_last_run")]

    finished_run(timedelta(minutes=16))
    found = samples(scrape(client))
    assert value(found, "kendis_refresher_stale") == 1
    assert 16 * 60 <= value(found, "kendis_refresher_seconds_since_last_run") <= 16 * 60 + 10


def test_metrics_count_the_alerts_waiting_for_delivery(client, db):
    Delivery = Alert.Delivery
    make_alert(age=timedelta(minutes=25))
    make_alert(email=Delivery.DELIVERED, webhook=Delivery.PENDING, age=timedelta(minutes=5))
    make_alert(email=Delivery.DELIVERED, webhook=Delivery.DELIVERED, age=timedelta(hours=2))
    make_alert(email=Delivery.GIVEN_UP, age=timedelta(days=2))
    found = samples(scrape(client))
    assert value(found, "kendis_alerts_pending") == 2
    assert 25 * 60 <= value(found, "kendis_alerts_pending_oldest_age_seconds") <= 25 * 60 + 10

    Alert.objects.update(email_state=Delivery.DELIVERED, webhook_state=Delivery.DELIVERED)
    found = samples(scrape(client))
    assert value(found, "kendis_alerts_pending") == 0
    assert value(found, "kendis_alerts_pending_oldest_age_seconds") == 0


def test_metrics_speak_openmetrics_to_a_scraper_that_asks(client, db):
    AccountFactory(name="A")
    response = scrape(client, HTTP_ACCEPT="application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    families = {family.name: family for family in openmetrics_families(body(response))}
    assert families["kendis_grants"].type == "gauge"
    assert {s.labels["status"]: s.value for s in families["kendis_grants"].samples
            if s.labels["kind"] == "account"}["connected"] == 1


def test_the_number_of_queries_does_not_grow_with_the_grants(client, db):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert scrape(client).status_code == 200
        return len(captured)

    account = AccountFactory(name="First")
    CredentialFactory(account=account, user__username="first")
    finished_run(timedelta(minutes=1))
    make_alert()
    few = queries()
    for n in range(49):
        other = AccountFactory(name=f"Account {n}", status=Status.ERROR if n % 7 == 0 else Status.CONNECTED)
        CredentialFactory(account=other, user__username=f"person-{n}")
        finished_run(timedelta(minutes=2 + n))
        make_alert()
    assert queries() == few
    # five for the grants, runs and alerts; one for today's refreshes by reason (issue 21); one for the rate-limit
    # counts (nothing to write here)
    assert few <= 7


def test_each_scrape_counts_afresh(client, db):
    """A fresh registry per scrape: nothing is remembered by the process (several workers answer alike)."""
    AccountFactory(name="A")
    first = samples(scrape(client))
    AccountFactory(name="B")
    ALMAccount.objects.filter(name="A").delete()
    second = samples(scrape(client))
    assert value(first, "kendis_grants", kind="account", status="connected") == 1
    assert value(second, "kendis_grants", kind="account", status="connected") == 1
    assert sum(1 for key in second if key[0] == "kendis_grants") == 8  # one per kind and status, no leftovers


# --------------------------------------------------------------------------
# the METRICS_TOKEN setting, and a real production process
# --------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["short-token", "a token with spaces in it, long enough", "tökén" * 6])
def test_a_weak_metrics_token_stops_the_start(production_env, token):
    result = run({**production_env, "METRICS_TOKEN": token}, "manage.py", "check")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "METRICS_TOKEN must be at least 24 ASCII characters without spaces" in last_line
    assert token not in result.stderr


SERVE = ("import sys; from wsgiref.simple_server import make_server; "
         "from kendis_integration.wsgi import application; "
         "make_server('127.0.0.1', int(sys.argv[1]), application).serve_forever()")


def serve(env: dict, tmp_path, name: str):
    port = free_port()
    return running_server([sys.executable, "-c", SERVE, str(port)], ready_url=f"http://127.0.0.1:{port}/healthz",
                          log_path=tmp_path / f"{name}.log", cwd=ROOT, env=env), f"http://127.0.0.1:{port}"


def test_a_production_process_answers_probes_over_plain_http(production_env, tmp_path):
    """DEBUG off, the HTTPS redirect on, ALLOWED_HOSTS the public name only: the probes still answer on the IP."""
    env = {**production_env, "METRICS_TOKEN": TOKEN, "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}  # one that answers (production_env's does not)
    migrated = run(env, "manage.py", "migrate", "--noinput", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    server, base = serve(env, tmp_path, "production")
    with server:
        healthz = requests.get(f"{base}/healthz", timeout=10, allow_redirects=False)  # Host: 127.0.0.1:<port>
        assert (healthz.status_code, healthz.text) == (200, "ok")
        readyz = requests.get(f"{base}/readyz", timeout=10, allow_redirects=False)
        assert readyz.status_code == 200 and readyz.json()["status"] == "ok"

        public = {"Host": "kendis.example.com"}
        login = requests.get(f"{base}/admin/login/", headers=public, timeout=10, allow_redirects=False)
        assert login.status_code == 301 and login.headers["Location"] == "https://kendis.example.com/admin/login/"
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        plain = requests.get(f"{base}/metrics", headers={**public, **bearer}, timeout=10, allow_redirects=False)
        assert plain.status_code == 301  # the numbers only travel over HTTPS
        proxied = {**public, "X-Forwarded-Proto": "https"}
        assert requests.get(f"{base}/metrics", headers=proxied, timeout=10).status_code == 401
        metrics = requests.get(f"{base}/metrics", headers={**proxied, **bearer}, timeout=10)
        assert metrics.status_code == 200
        names = {family.name for family in text_string_to_metric_families(metrics.text)}
        assert {"kendis_grants", "kendis_refresher_stale", "kendis_alerts_pending"} <= names


def test_a_production_process_without_its_database_is_alive_but_not_ready(production_env, tmp_path):
    # Nothing listens on port 9: connecting is refused at once.
    env = {**production_env, "DATABASE_URL": "postgres://kendis:pw-zanzibar@127.0.0.1:9/kendis"}
    server, base = serve(env, tmp_path, "no-database")
    with server:
        assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
        readyz = requests.get(f"{base}/readyz", timeout=30)
        assert readyz.status_code == 503
        assert json.loads(readyz.text) == {"status": "database unavailable"}
    log = (tmp_path / "no-database.log").read_text()
    assert "Readiness: database unavailable (OperationalError)." in log
    assert "pw-zanzibar" not in log
