"""Adversarial review of the security fixes of issue 18: the ways around them found afterwards, each closed.

Item 1 (Jira's refusal of a person's grant is not lifted by anything but a successful reconnect): a person made
inactive in Django, then active again (a directory sync, an admin's slip), no longer escapes the refusal.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import ALMAccount, ALMCredential
from tests.conftest import REVOKE_URL, TOKEN_URL, staff_user

Status = ALMAccount.Status


def refused_by_jira(account: ALMAccount, user, mocked_jira) -> ALMCredential:
    """The person's grant due for a refresh, and Jira refusing it (their Jira user deactivated), as the refresher
    finds out."""
    now = timezone.now()
    mine = ALMCredential.objects.create(
        account=account, user=user, access_token="ALICE-access", refresh_token="ALICE-refresh",
        token_expires_at=now, token_scope="WRITE", status=Status.CONNECTED, connected_at=now - timedelta(days=1),
        connected_as_name="jalice", connected_as_display_name="Alice Jones")
    mocked_jira.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "Refresh token is "
                                                                                                "invalid"})
    result = services.refresh_grant(grant=services.GrantRef("user", mine.pk), actor="refresher")
    assert result.outcome is services.RefreshOutcome.NEEDS_REAUTHORIZATION
    mocked_jira.post(REVOKE_URL, status=200)
    return mine


def test_a_person_jira_refused_stays_refused_after_being_made_inactive_and_active_again(
        connected_account, mocked_jira, django_capture_on_commit_callbacks):
    alice = staff_user("alice")
    mine = refused_by_jira(connected_account, alice, mocked_jira)

    alice.is_active = False
    with django_capture_on_commit_callbacks(execute=True):
        alice.save()  # her tokens are deleted here (and revoked at Jira)
    alice.is_active = True
    alice.save()

    mine.refresh_from_db()
    assert (mine.access_token, mine.refresh_token) == (None, None)
    assert mine.status == Status.NEEDS_REAUTHORIZATION
    with pytest.raises(services.NoJiraIdentity) as refused:
        services.jira_identity(account=connected_account, user=alice)
    assert "needs re-authorization" in str(refused.value)
    assert "the account's connection is not used instead" in str(refused.value)


def test_a_working_connection_of_a_person_made_inactive_still_ends_as_not_connected(
        connected_account, mocked_jira, django_capture_on_commit_callbacks):
    """Only a refusal is kept: the working connection of a person made inactive ends as before."""
    alice = staff_user("alice")
    now = timezone.now()
    mine = ALMCredential.objects.create(
        account=connected_account, user=alice, access_token="ALICE-access", refresh_token="ALICE-refresh",
        token_expires_at=now + timedelta(hours=1), token_scope="WRITE", status=Status.CONNECTED, connected_at=now,
        connected_as_name="jalice", connected_as_display_name="Alice Jones")
    mocked_jira.post(REVOKE_URL, status=200)

    alice.is_active = False
    with django_capture_on_commit_callbacks(execute=True):
        alice.save()  # her tokens are deleted here and revoked at Jira

    mine.refresh_from_db()
    assert (mine.status, mine.connected_as_name, mine.access_token) == (Status.NOT_CONNECTED, "", None)
