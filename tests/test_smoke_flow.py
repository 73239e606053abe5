import re

from django.urls import reverse

from alm_accounts.jira import s256_challenge
from alm_accounts.models import ALMAccount
from tests.conftest import MYSELF_URL, TOKEN_URL, form_of, query_of, token_answer


def test_get_auth_token_then_callback_connects(admin_client, account, mocked_jira):
    url = reverse("admin:alm_accounts_almaccount_change", args=[account.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    data = {"alm_type": "jira", "name": account.name, "authentication": "jira_server_oauth2",
            "base_url": account.base_url, "client_id": account.client_id, "client_secret": "", "scope": "ADMIN",
            "_get_auth_token": "Get Auth Token"}
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content[:2000]
    authorize = response["Location"]
    q = query_of(authorize)
    assert authorize.startswith("https://jira.example.com/jira/rest/oauth2/latest/authorize?")
    assert q["redirect_uri"] == account.callback_url
    mocked_jira.post(TOKEN_URL, json=token_answer())
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin", "displayName": "Jira Admin"})
    callback_path = account.callback_url.replace("http://testserver", "")
    cb = admin_client.get(callback_path, {"code": "CODE-1", "state": q["state"]})
    assert cb.status_code == 302
    sent = form_of(mocked_jira.calls[0])
    assert s256_challenge(sent["code_verifier"]) == q["code_challenge"]
    account.refresh_from_db()
    assert account.status == ALMAccount.Status.CONNECTED
    assert account.connected_as == "Jira Admin (jadmin)"
    page = admin_client.get(cb["Location"]).content.decode()
    assert "Connected to Jira as Jira Admin (ADMIN)" in page
    assert not re.search("ACCESSTOKEN|REFRESHTOKEN|CLIENTSECRET", page)
