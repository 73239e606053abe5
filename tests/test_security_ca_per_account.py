"""Security review (issue 18), item 5: an account's "Jira CA certificate (PEM)" is trusted only for that account's
Jira Data Center host, never for Atlassian's hosts, where the deployment's ATLASSIAN_CLIENT_SECRET is sent.

Atlassian's authorization server is a stand-in on a real TLS socket whose certificate a company CA signed: what
is trusted is decided by a real TLS handshake.
"""

from __future__ import annotations

import ssl
from datetime import timedelta

import pytest
import trustme
from django.urls import reverse
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import ALMAccount
from alm_accounts.services import GrantRef, RefreshOutcome
from tests.conftest import ATLASSIAN_CLIENT_ID, ATLASSIAN_SECRET, CLOUD_SITE, change_form_data
from tests.doubles.fake_jira import FakeJira


@pytest.fixture(scope="module")
def company_ca() -> trustme.CA:
    return trustme.CA(organization_name="Example Corp internal CA")


@pytest.fixture
def company_ca_pem(company_ca) -> str:
    return company_ca.cert_pem.bytes().decode()


@pytest.fixture
def host_signed_by_the_company_ca(company_ca):
    """A host whose HTTPS certificate the company CA signed (standing in for whoever holds that CA's key)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    company_ca.issue_cert("127.0.0.1").configure_cert(context)
    with FakeJira(tls_context=context) as fake:
        yield fake


def test_switching_an_account_to_jira_cloud_forgets_its_data_center_ca_certificate(admin_client, account,
                                                                                     company_ca_pem, atlassian):
    account.jira_ca_certificate = company_ca_pem
    account.save()

    response = admin_client.post(reverse("admin:alm_accounts_almaccount_change", args=[account.pk]), change_form_data(
        account, authentication=ALMAccount.Authentication.JIRA_CLOUD_OAUTH2, base_url=CLOUD_SITE, client_id="",
        jira_ca_certificate=company_ca_pem,  # the Cloud form only hides the field: the browser still sends it
        cloud_scopes=["read:jira-work", "read:jira-user"]))

    assert response.status_code == 302, response.content.decode()[:3000]
    account.refresh_from_db()
    assert account.is_cloud
    assert account.jira_ca_certificate == ""


@pytest.mark.django_db
def test_a_cloud_account_never_trusts_its_stored_ca_for_atlassians_authorization_server(
        settings, company_ca_pem, host_signed_by_the_company_ca):
    """A row that still holds a CA (saved before this rule, or from a shell): the refresh's token request to
    ATLASSIAN_AUTH_URL, which carries ATLASSIAN_CLIENT_SECRET, fails the TLS handshake and sends nothing."""
    fake = host_signed_by_the_company_ca
    settings.ATLASSIAN_AUTH_URL = fake.auth_url
    settings.ATLASSIAN_CLIENT_ID, settings.ATLASSIAN_CLIENT_SECRET = ATLASSIAN_CLIENT_ID, ATLASSIAN_SECRET
    access, refresh = fake.add_grant("cloud", redirect_uri="", client_id=ATLASSIAN_CLIENT_ID,
                                     client_secret=ATLASSIAN_SECRET, cloud=True)
    account = ALMAccount.objects.create(
        name="Jira Cloud - Demo", base_url=CLOUD_SITE, authentication=ALMAccount.Authentication.JIRA_CLOUD_OAUTH2,
        jira_ca_certificate=company_ca_pem, access_token=access, refresh_token=refresh, cloud_id="cloud-id",
        token_expires_at=timezone.now() - timedelta(minutes=1), status=ALMAccount.Status.CONNECTED)

    result = services.refresh_grant(grant=GrantRef.of(account), actor="test")

    assert result.outcome == RefreshOutcome.FAILED
    assert "TLS handshake" in result.message
    assert fake.calls == []  # no token request: the Atlassian secret went nowhere
    assert fake.refreshes["cloud"] == 0
