"""Security review (issue 18), item 3, on real PostgreSQL: one Jira user is bound to one person, even at once.

Two people whose browsers are signed in to Jira as the same Jira user complete their consents at the same
moment: Jira (tests/doubles/fake_jira.py, on a real socket) holds both code exchanges until both are in flight, and both
callbacks then reach the store together whenever the code lets them. Exactly one may end up holding a working
grant; the other is refused ("already connected by ...") and the tokens Jira issued to them are revoked. And when
the unique constraint itself answers (a writer that took the Jira user without the account's lock), that answer
is a refusal, never a lost write to be repeated without the identity.

PostgreSQL only (row locks, a unique index that makes a second writer wait). Without it these tests skip locally;
with CI=true they fail.
"""

from __future__ import annotations

import html
import re
import threading
import time
from urllib.parse import urlsplit

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alm_accounts.models import ALMAccount, ALMCredential, AuthEvent
from alm_accounts.services import authorization
from tests.conftest import in_thread, query_of, staff_user

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("postgresql_only"), pytest.mark.django_db(transaction=True)]

CLIENT_ID, CLIENT_SECRET = "pg-client", "CLIENTSECRET-pgrace-7a1b"
MY_PAGE = reverse("my_alm_credentials")
WAIT_SECONDS = 30  # only reached when something is broken
RENDEZVOUS_SECONDS = 3  # how long a consent at the store waits for the other one


def ready_account(fake) -> ALMAccount:
    return ALMAccount.objects.create(name="Jira - Race", base_url=fake.base_url, client_id=CLIENT_ID,
                                     client_secret=CLIENT_SECRET, client_secret_base_url=fake.base_url)


def started_consent(fake, account: ALMAccount, username: str, *, jira_user: str, display: str,
                    first_time: bool = True):
    """`username` clicks Connect my Jira account and consents in Jira as `jira_user`: (browser, callback query).
    Not `first_time`: they connected once and disconnected since (their credential's row exists)."""
    browser = Client()
    user = staff_user(username)
    if not first_time:
        ALMCredential.objects.create(account=account, user=user)
    browser.force_login(user)
    response = browser.post(reverse("my_alm_credentials_connect", args=[account.pk]))
    assert response.status_code == 302, response.content[:2000]
    state = query_of(response["Location"])["state"]
    code = f"CODE-{username}"
    fake.add_code(code, username, redirect_uri=account.callback_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                  user=jira_user, display_name=display)
    return browser, {"code": code, "state": state}


def come_back_in_thread(browser: Client, account: ALMAccount, query: dict):
    """Jira's redirect to the callback URL, in a thread of its own (its own database connection)."""
    return in_thread(lambda: browser.get(urlsplit(account.callback_url).path, query))


def landed_message(browser: Client, outcome: dict) -> str:
    assert "error" not in outcome, repr(outcome.get("error"))
    response = outcome["result"]
    assert response.status_code == 302 and response["Location"] == MY_PAGE, (response.status_code,
                                                                               response.content[:2000])
    text = browser.get(MY_PAGE).content.decode()
    (message,) = re.findall(r'<ul class="messagelist">\s*<li[^>]*>(.*?)</li>', text, re.S)
    return " ".join(html.unescape(message).split())


@pytest.fixture
def meet_at_the_store(monkeypatch):
    """Both consents go on to store their grant together (each waits up to RENDEZVOUS_SECONDS for the other),
    whenever the code lets both get that far: the code before the fix did (both had checked that nobody held the
    Jira user, neither had stored yet); the fix holds the second at the account's lock, so the first waits out
    the rendezvous alone and stores."""
    rendezvous = threading.Barrier(2, timeout=RENDEZVOUS_SECONDS)
    real = authorization.store_new_grant

    def store_new_grant(*args, **kwargs):
        try:
            rendezvous.wait()
        except threading.BrokenBarrierError:
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(authorization, "store_new_grant", store_new_grant)


FIRST_TIME = pytest.mark.parametrize("first_time", [True, False], ids=["first connect", "reconnect"])


@FIRST_TIME
def test_two_people_consenting_as_one_jira_user_at_once_end_with_one_grant(fake_jira, meet_at_the_store, first_time):
    account = ready_account(fake_jira)
    consents = {name: started_consent(fake_jira, account, name, jira_user="jshared", display="Shared User",
                                      first_time=first_time)
                for name in ("alice", "bob")}
    fake_jira.hold_token_requests(until_in_flight=2, timeout=WAIT_SECONDS / 3)

    running = {name: come_back_in_thread(browser, account, query) for name, (browser, query) in consents.items()}
    for thread, _ in running.values():
        thread.join(WAIT_SECONDS)

    assert fake_jira.max_token_in_flight == 2  # both consents were at Jira at the same moment
    messages = {name: landed_message(consents[name][0], outcome) for name, (_, outcome) in running.items()}
    holders = list(ALMCredential.objects.filter(refresh_token__isnull=False).select_related("user"))
    assert len(holders) == 1, [(c.user.username, c.connected_as_name) for c in holders]
    (winner,) = holders
    loser = "bob" if winner.user.username == "alice" else "alice"
    assert winner.connected_as_name == "jshared" and winner.status == ALMAccount.Status.CONNECTED
    assert messages[winner.user.username] == "Connected to Jira as Shared User (WRITE)."
    assert messages[loser].startswith(
        f"The Jira user Shared User is already connected to Jira - Race by {winner.user.username}.")
    # The refused consent's grant is revoked at Jira; the winner's works.
    assert fake_jira.is_live(winner.user.username) and not fake_jira.is_live(loser)
    assert fake_jira.rejected == [] and fake_jira.unexpected == []
    failed = AuthEvent.objects.get(kind=AuthEvent.Kind.AUTHORIZATION_FAILED)
    assert failed.grant_owner == loser


def backends_waiting_for_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return cursor.fetchone()[0]


@FIRST_TIME
def test_the_unique_constraints_answer_is_a_refusal_never_a_write_without_the_jira_user(fake_jira, first_time):
    """Bob's credential takes the Jira user jshared in a transaction that does not take the account's lock (as a
    Test of his connection records the name Jira reports after a rename), still open while alice's consent as
    jshared is stored: her write waits on the unique index, then PostgreSQL refuses it. Before the fix that
    refusal was taken for a lost write and repeated without the Jira user, which succeeded."""
    account = ready_account(fake_jira)
    browser, query = started_consent(fake_jira, account, "alice", jira_user="jshared", display="Shared User",
                                     first_time=first_time)
    bobs = ALMCredential.objects.create(
        account=account, user=staff_user("bob"), access_token="BOB-access", refresh_token="BOB-refresh",
        token_expires_at=timezone.now(), status=ALMAccount.Status.CONNECTED, connected_as_name="jbob",
        connected_as_display_name="Bob Keller")
    taken, release = threading.Event(), threading.Event()

    def take_the_jira_user():
        with transaction.atomic():
            ALMCredential.objects.filter(pk=bobs.pk).update(connected_as_name="jshared")
            taken.set()
            release.wait(WAIT_SECONDS)

    writer, written = in_thread(take_the_jira_user)
    assert taken.wait(WAIT_SECONDS)
    consent, outcome = come_back_in_thread(browser, account, query)
    deadline = time.monotonic() + WAIT_SECONDS
    while backends_waiting_for_a_lock() == 0 and consent.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backends_waiting_for_a_lock() == 1  # alice's store waits on bob's open transaction
    release.set()
    writer.join(WAIT_SECONDS)
    consent.join(WAIT_SECONDS)

    assert "error" not in written, repr(written.get("error"))
    message = landed_message(browser, outcome)
    assert message.startswith("The Jira user Shared User is already connected to Jira - Race by bob.")
    mine = ALMCredential.objects.get(account=account, user__username="alice")
    assert (mine.access_token, mine.refresh_token, mine.connected_as_name) == (None, None, "")
    assert not fake_jira.is_live("alice")  # revoked at Jira, not left alive
    bobs.refresh_from_db()
    assert (bobs.refresh_token, bobs.connected_as_name) == ("BOB-refresh", "jshared")
