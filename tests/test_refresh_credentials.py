"""`refresh_tokens` keeps people's own user credentials alive too (issue 11, user-based sync).

Same rules as the accounts' own connections: due within the window (or expiry
unknown), a refresh token present, not refused by Jira before; each grant is
refreshed with *its own* refresh token under its row lock. An inactive
person's credential is never refreshed. `--account` takes that account's own
connection and its user credentials; the output names each grant and the
summary counts both kinds.

Jira is the shared fake on a real socket (tests/doubles/fake_jira.py): every refresh
rotates, a refresh token is valid once, each grant belongs to a Jira user.
Runs on SQLite and on PostgreSQL (the command's worker threads see the rows:
transaction=True).
"""

from __future__ import annotations

import logging
import os
import re
import signal
from datetime import timedelta

import pytest

from alm_accounts import services
from alm_accounts.models import ALMAccount, ALMCredential, AuthEvent
from tests.conftest import assert_holds_jiras_current_pair
from tests.doubles.fake_jira import TOKEN_PATH, FakeJira
from tests.factories import connect_account, connect_person, grant_key

pytestmark = pytest.mark.django_db(transaction=True)

Status = ALMAccount.Status
SOON, LATER = timedelta(minutes=5), timedelta(hours=2)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def refresh_tokens_sent(fake: FakeJira) -> list[str]:
    return [call.form["refresh_token"] for call in fake.calls_to(TOKEN_PATH)]


def assert_untouched(grant: ALMAccount | ALMCredential):
    before = (grant.access_token, grant.refresh_token, grant.token_expires_at, grant.status)
    grant.refresh_from_db()
    assert (grant.access_token, grant.refresh_token, grant.token_expires_at, grant.status) == before


def deactivate_in_jira(fake: FakeJira, grant: ALMAccount | ALMCredential):
    """The Jira user is deactivated: Jira drops their grants, and their refresh token gets invalid_grant."""
    key = grant_key(grant)
    with fake.lock:
        access, refresh = fake.current_tokens(key)
        fake.live_refresh.pop(refresh, None)
        fake.live_access.pop(access, None)


# --------------------------------------------------------------------------
# Due credentials are refreshed with their own refresh token
# --------------------------------------------------------------------------


def test_due_user_credentials_are_refreshed_with_their_own_token_and_the_account_is_left_alone(
    fake_jira, run_command, caplog
):
    caplog.set_level(logging.INFO, logger="alm_accounts.services")
    account = connect_account(fake_jira, "Jira Core", expires_in=LATER)  # not due
    alice = connect_person(fake_jira, account, "alice", expires_in=SOON)
    bob = connect_person(fake_jira, account, "bob", expires_in=None)  # expiry unknown: due
    carol = connect_person(fake_jira, account, "carol", expires_in=LATER)  # not due
    sent_by_alice, sent_by_bob = alice.refresh_token, bob.refresh_token

    run = run_command()

    assert run.code == 0, run
    # Each person's refresh went out with that person's own refresh token, once; the account's was never sent.
    assert sorted(refresh_tokens_sent(fake_jira)) == sorted([sent_by_alice, sent_by_bob])
    assert dict(fake_jira.refreshes) == {"Jira Core/alice": 1, "Jira Core/bob": 1}
    assert fake_jira.rejected == []
    assert_holds_jiras_current_pair(alice, fake_jira)
    assert_holds_jiras_current_pair(bob, fake_jira)
    assert_untouched(account)
    assert_untouched(carol)
    # The output names each person's grant; the summary counts both kinds.
    assert run.line_of("Jira Core (alice)").startswith("Jira Core (alice): refreshed — Token refreshed; expires ")
    assert run.line_of("Jira Core (bob)").startswith("Jira Core (bob): refreshed — ")
    assert "carol" not in run.out
    assert re.fullmatch(r"Summary: 2 refreshed \(0 account connections, 2 user credentials, [\d.]+ s, "
                        r"concurrency \d+\)\.", run.summary), run.summary
    # Routine refreshes: counted on each person's own grant, and the log says whose grant was refreshed and by
    # what; the audit trail keeps none of them.
    assert (alice.refresh_count, bob.refresh_count, carol.refresh_count) == (1, 1, 0)
    assert ALMAccount.objects.get(pk=account.pk).refresh_count == 0
    lines = [r for r in caplog.records if r.getMessage().startswith("Token refresh of ")]
    assert sorted((r.grant_kind, r.grant_id, r.account_id, r.outcome, r.actor) for r in lines) == sorted([
        ("user", alice.pk, account.pk, "refreshed", "manage.py refresh_tokens"),
        ("user", bob.pk, account.pk, "refreshed", "manage.py refresh_tokens"),
    ])
    assert not AuthEvent.objects.filter(kind=AuthEvent.Kind.REFRESHED).exists()


def test_accounts_and_credentials_are_refreshed_together_most_urgent_first(fake_jira, run_command):
    """One list, by expiry whatever the kind (one at a time, so that the order shows)."""
    core = connect_account(fake_jira, "Jira Core", expires_in=timedelta(minutes=10))
    ops = connect_account(fake_jira, "Jira Ops", expires_in=None)
    alice = connect_person(fake_jira, core, "alice", expires_in=timedelta(minutes=1))
    bob = connect_person(fake_jira, ops, "bob", expires_in=timedelta(minutes=5))

    run = run_command("--concurrency", "1")

    assert run.code == 0, run
    assert [line.split(":")[0] for line in run.lines[:-1]] == [
        "Jira Ops", "Jira Core (alice)", "Jira Ops (bob)", "Jira Core"]
    assert run.summary.startswith("Summary: 4 refreshed (2 account connections, 2 user credentials, ")
    for grant in (core, ops, alice, bob):
        assert_holds_jiras_current_pair(grant, fake_jira)


def test_an_inactive_persons_credential_is_never_refreshed(fake_jira, run_command):
    account = connect_account(fake_jira, "Jira Core", expires_in=SOON)
    alice = connect_person(fake_jira, account, "alice", expires_in=SOON)
    gone = connect_person(fake_jira, account, "dave", expires_in=SOON, active=False)
    sent_by_dave = gone.refresh_token

    for args in ((), ("--force",)):
        run = run_command(*args)
        assert run.code == 0, run
        assert "dave" not in run.out

    assert sent_by_dave not in refresh_tokens_sent(fake_jira)
    assert "Jira Core/dave" not in fake_jira.refreshes
    assert_untouched(gone)
    assert_holds_jiras_current_pair(alice, fake_jira)
    # Named explicitly, the account's grants are all listed: dave's says why it is left alone.
    run = run_command("--account", "Jira Core", "--force")
    assert run.code == 0, run
    assert run.line_of("Jira Core (dave)") == (
        "Jira Core (dave): not connected — the person is inactive: never refreshed or used")
    assert sent_by_dave not in refresh_tokens_sent(fake_jira)
    assert_untouched(gone)


def test_a_person_deactivated_in_jira_needs_reauthorization_and_the_other_grants_are_untouched(
    fake_jira, run_command
):
    account = connect_account(fake_jira, "Jira Core", expires_in=SOON)
    alice = connect_person(fake_jira, account, "alice", expires_in=SOON)
    bob = connect_person(fake_jira, account, "bob", expires_in=SOON)
    deactivate_in_jira(fake_jira, bob)
    bobs_tokens = (bob.access_token, bob.refresh_token)

    run = run_command()

    assert run.code == 1, run
    line = run.line_of("Jira Core (bob)")
    assert line.startswith("Jira Core (bob): needs re-authorization — "), line
    assert run.summary.startswith("Summary: 1 needs re-authorization, 2 refreshed "
                                  "(1 account connection, 2 user credentials, "), run.summary
    bob.refresh_from_db()
    assert bob.status == Status.NEEDS_REAUTHORIZATION
    assert (bob.access_token, bob.refresh_token) == bobs_tokens  # nothing deleted; never handed out again
    assert_holds_jiras_current_pair(account, fake_jira)
    assert_holds_jiras_current_pair(alice, fake_jira)
    failed = AuthEvent.objects.get(kind=AuthEvent.Kind.REFRESH_FAILED)
    assert (failed.grant_owner, failed.credential_id) == ("bob", bob.pk)
    assert not AuthEvent.objects.filter(kind=AuthEvent.Kind.REFRESH_FAILED, grant_owner__in=["", "alice"]).exists()

    # The next runs leave bob's credential alone (it waits for bob to reconnect) and succeed.
    tries = refresh_tokens_sent(fake_jira).count(bobs_tokens[1])
    again = run_command("--force")
    assert again.code == 0, again
    assert "bob" not in again.out
    assert refresh_tokens_sent(fake_jira).count(bobs_tokens[1]) == tries == 1


# --------------------------------------------------------------------------
# --account, --dry-run, stopping
# --------------------------------------------------------------------------


def test_account_option_takes_that_accounts_connection_and_its_credentials_only(fake_jira, run_command):
    core = connect_account(fake_jira, "Jira Core", expires_in=SOON)
    ops = connect_account(fake_jira, "Jira Ops", expires_in=SOON)
    alice = connect_person(fake_jira, core, "alice", expires_in=SOON)
    bob = connect_person(fake_jira, core, "bob", expires_in=SOON)
    alice_on_ops = connect_person(fake_jira, ops, "alice", expires_in=SOON)

    run = run_command("--account", "Jira Core")

    assert run.code == 0, run
    assert dict(fake_jira.refreshes) == {"Jira Core": 1, "Jira Core/alice": 1, "Jira Core/bob": 1}
    assert sorted(line.split(":")[0] for line in run.lines[:-1]) == [
        "Jira Core", "Jira Core (alice)", "Jira Core (bob)"]
    assert run.summary.startswith("Summary: 3 refreshed (1 account connection, 2 user credentials, ")
    for grant in (core, alice, bob):
        assert_holds_jiras_current_pair(grant, fake_jira)
    assert_untouched(ops)
    assert_untouched(alice_on_ops)

    # By id too.
    run = run_command("--account", str(ops.pk))
    assert run.code == 0, run
    assert sorted(line.split(":")[0] for line in run.lines[:-1]) == ["Jira Ops", "Jira Ops (alice)"]
    assert_holds_jiras_current_pair(alice_on_ops, fake_jira)


def test_dry_run_lists_both_kinds_and_changes_nothing(fake_jira, run_command):
    account = connect_account(fake_jira, "Jira Core", expires_in=SOON)
    alice = connect_person(fake_jira, account, "alice", expires_in=SOON)
    bob = connect_person(fake_jira, account, "bob", expires_in=LATER)
    dave = connect_person(fake_jira, account, "dave", expires_in=SOON, active=False)

    run = run_command("--dry-run")

    assert run.code == 0, run
    assert sorted(line.split(":")[0] for line in run.lines[:-1]) == ["Jira Core", "Jira Core (alice)"]
    assert all(": would refresh (expires " in line for line in run.lines[:-1])
    assert run.summary.startswith("Summary: 2 would refresh (1 account connection, 1 user credential, ")

    # Naming the account lists every grant on it with what a real run would do.
    run = run_command("--dry-run", "--account", "Jira Core")
    assert run.code == 0, run
    assert run.line_of("Jira Core (alice)").startswith("Jira Core (alice): would refresh")
    assert run.line_of("Jira Core (bob)").startswith("Jira Core (bob): not due")
    assert run.line_of("Jira Core (dave)").startswith("Jira Core (dave): not connected")
    assert run.summary.startswith("Summary: 1 not connected, 1 not due, 2 would refresh "
                                  "(1 account connection, 3 user credentials, ")

    assert fake_jira.calls_to(TOKEN_PATH) == []
    for grant in (account, alice, bob, dave):
        assert_untouched(grant)
    assert not AuthEvent.objects.exists()


def test_stopped_early_the_summary_says_which_kinds_were_left_untried(fake_jira, run_command, monkeypatch):
    """Ctrl-C during the first refresh: it finishes, nothing else starts, the rest is counted by kind."""
    account = connect_account(fake_jira, "Jira Core", expires_in=timedelta(minutes=1))  # the most urgent
    people = [connect_person(fake_jira, account, name, expires_in=SOON) for name in ("alice", "bob")]
    real_refresh = services.refresh_grant

    def refresh_interrupted(**kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real_refresh(**kwargs)

    monkeypatch.setattr(services, "refresh_grant", refresh_interrupted)
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)  # the caller's: restored by the command
    try:
        run = run_command("--concurrency", "1")
    finally:
        signal.signal(signal.SIGINT, previous)

    assert run.code == 130, run
    assert run.lines[0].startswith("Jira Core: refreshed — "), run.out
    assert run.summary.startswith("Summary: 1 refreshed (1 account connection, 0 user credentials, "), run.summary
    assert run.summary.endswith("Stopped early (SIGINT): 2 user credentials left untried."), run.summary
    assert dict(fake_jira.refreshes) == {"Jira Core": 1}
    assert_holds_jiras_current_pair(account, fake_jira)
    for person in people:
        assert_untouched(person)
