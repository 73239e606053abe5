"""The account's Notify field (issue 12): who is told when its connection breaks, validated on save."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import ALMAccount
from tests.conftest import TOKEN_URL, change_form_data


def change(admin_client, account, **fields):
    url = reverse("admin:alm_accounts_almaccount_change", args=[account.pk])
    return admin_client.post(url, change_form_data(account, **fields))


@pytest.mark.django_db
def test_the_account_page_takes_a_notify_list_and_refuses_what_is_not_an_address(admin_client, account):
    page = admin_client.get(reverse("admin:alm_accounts_almaccount_change", args=[account.pk])).content.decode()
    assert 'name="notify"' in page and "Who is told by e-mail" in page

    refused = change(admin_client, account, notify="ops@example.com, not-an-address")
    assert refused.status_code == 200
    assert "Not an e-mail address: not-an-address" in refused.content.decode()
    account.refresh_from_db()
    assert account.notify == ""

    saved = change(admin_client, account, notify="ops@example.com\njira-admins@example.com")
    assert saved.status_code == 302
    account.refresh_from_db()
    assert account.notify == "ops@example.com\njira-admins@example.com"


@pytest.mark.django_db(transaction=True)
def test_a_broken_connection_is_mailed_to_the_notify_list(connected_account, mocked_jira, settings):
    settings.ADMINS = [("Fallback", "fallback@example.com")]
    ALMAccount.objects.filter(pk=connected_account.pk).update(notify="ops@example.com jira-admins@example.com",
                                                              token_expires_at=timezone.now())
    mocked_jira.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})

    services.refresh_account(account_id=connected_account.pk, actor="test")

    (message,) = mail.outbox
    assert sorted(message.to) == ["jira-admins@example.com", "ops@example.com"]
    assert "Jira connection broken: Jira - Core Banking" in message.subject
    assert "90 days" in message.body
    # The refresh's own message names the likely cause too (the account page and the audit trail show it).
    connected_account.refresh_from_db()
    assert "refresh tokens live 90 days by default" in connected_account.last_error
