"""Issue 22: many callers at once on a cold service-account connection make ONE token request (PostgreSQL).

The token of a service account (OAuth 2.0 client credentials) is asked for under the account's row lock
(services.grants.refresh_grant): the first caller asks, the others wait for the lock and find the token it
stored. Real threads, each with its own database connection; Jira mocked with `responses`, its token endpoint
slow enough that every caller arrives while the first request is in flight (the test proves they overlapped).

PostgreSQL only (row locks). Without it the test skips locally; with CI=true it fails. Run it with:

    DATABASE_URL=postgres://kendis:kendis@127.0.0.1:5432/kendis .venv/bin/python -m pytest \
        tests/test_service_accounts_pg.py
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
import responses
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import ALMAccount
from tests.conftest import JIRA, TOKEN_URL, in_thread

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("postgresql_only"), pytest.mark.django_db(transaction=True)]

CALLERS = 12
TOKEN_LATENCY_SECONDS = 0.5
SAFETY_NET_SECONDS = 30
ISSUE_URL = f"{JIRA}/rest/api/2/issue/KEN-1"


def test_concurrent_calls_on_a_cold_service_account_make_one_token_request(mocked_jira):
    account = ALMAccount.objects.create(
        name="Jira - Service", base_url=JIRA, authentication=ALMAccount.Authentication.JIRA_SERVER_SERVICE_ACCOUNT,
        scope="READ", service_client_id="svc-pg", service_client_secret="SERVICESECRET-pg-1a2b",
        service_client_secret_base_url=JIRA, status=ALMAccount.Status.CONNECTED,
        connected_at=timezone.now() - timedelta(days=1), last_refreshed_at=timezone.now() - timedelta(hours=1),
        connected_as_name="svc-pg")  # connected before, no token cached: cold
    answered = threading.Event()
    issued, early = [], []
    lock = threading.Lock()

    def token_endpoint(request):
        with lock:
            issued.append(request)
            n = len(issued)
        time.sleep(TOKEN_LATENCY_SECONDS)  # the other callers arrive meanwhile and wait for the row lock
        answered.set()
        return 200, {}, json.dumps({"access_token": f"SERVICETOKEN-pg-{n}", "token_type": "bearer",
                                    "expires_in": 3600, "scope": "READ"})

    mocked_jira.add_callback(responses.POST, TOKEN_URL, callback=token_endpoint)
    mocked_jira.add_callback(responses.GET, ISSUE_URL, callback=lambda request: (200, {}, '{"key": "KEN-1"}'))

    def call():
        account_row = ALMAccount.objects.get(pk=account.pk)  # read cold: no token
        with lock:
            early.append(not answered.is_set())  # arrived before the first token answer: a real overlap
        return services.jira_request(account=account_row, method="GET", path="/rest/api/2/issue/KEN-1")

    started = [in_thread(call) for _ in range(CALLERS)]
    for thread, _ in started:
        thread.join(SAFETY_NET_SECONDS)
    outcomes = [outcome for _, outcome in started]

    assert [o.get("error") for o in outcomes] == [None] * CALLERS
    assert [o["result"] for o in outcomes] == [{"key": "KEN-1"}] * CALLERS
    assert sum(early) == CALLERS, "every caller arrived while the token was being asked for"
    assert len(issued) == 1, "one token request for every concurrent caller"
    bearers = {c.request.headers["Authorization"] for c in mocked_jira.calls if c.request.url == ISSUE_URL}
    assert bearers == {"Bearer SERVICETOKEN-pg-1"}
    account.refresh_from_db()
    assert account.access_token == "SERVICETOKEN-pg-1" and account.refresh_token is None
