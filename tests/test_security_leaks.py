"""No secret ever leaks: one test drives every flow against a local fake Jira and searches everything.

The fake Jira (tests/doubles/fake_jira.py, fixture `fake_jira`) is a real HTTP server
on 127.0.0.1, so `requests` and `urllib3` do real work (and log at DEBUG what
they log); every answer is scripted here, with secrets made to be searched
for. Searched for every secret: log records at every level (ours, Django's
including SQL, requests', urllib3's; as text and as LOG_FORMAT=json lines with
their extra fields), every response (HTML, all headers
including Location and cookies), the pages the redirects lead to (with their
messages), the audit trail, last_error, command output and exception texts,
and every alert sent: the e-mails (mail.outbox, as sent on the wire) and the
webhook requests (headers and body, received by a local server), with the
alerts themselves and their admin pages.
The only place a secret may appear is the `state` in the authorize URL the
browser is sent to: that is the protocol.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import mail
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from alm_accounts import services
from alm_accounts.jira import PKCE, JiraClient, JiraError, TokenSet
from alm_accounts.models import Alert, ALMAccount, AuthEvent, PendingAuthorization
from kendis_integration.logs import JsonFormatter
from tests.conftest import JIRA, query_of
from tests.doubles.fake_jira import MYSELF_PATH, REVOKE_PATH, SERVER_INFO_PATH, TOKEN_PATH
from tests.doubles.webhook_receiver import WebhookReceiver

CLIENT_SECRET = "CLIENTSECRET-LeakCanary-5d1f0b7a93e2"
LOGGERS = ["", "django", "django.db.backends", "django.request", "django.security", "django.template",
           "requests", "urllib3", "urllib3.connectionpool", "alm_accounts"]


# --------------------------------------------------------------------------
# What the test collects, and the secrets it searches for
# --------------------------------------------------------------------------


class Evidence:
    def __init__(self, client):
        self.client = client
        self.items: list[tuple[str, str]] = []
        self.authorize_urls: list[str] = []

    def add(self, where: str, text) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        self.items.append((where, str(text)))

    def response(self, where: str, response) -> None:
        """Keep the body and every header; follow a redirect inside the site and keep that page too."""
        self.add(f"{where}: body", response.content)
        self.add(f"{where}: headers", "\n".join(f"{k}: {v}" for k, v in response.items()))
        self.add(f"{where}: cookies", response.cookies.output())
        location = response.get("Location", "")
        if location.startswith("/"):
            page = self.client.get(location)
            self.add(f"{where}: page after redirect", page.content)
            self.add(f"{where}: page headers", "\n".join(f"{k}: {v}" for k, v in page.items()))

    def exception(self, where: str, exc: BaseException) -> None:
        self.add(f"{where}: str", str(exc))
        self.add(f"{where}: repr", repr(exc))
        self.add(f"{where}: traceback", "".join(traceback.format_exception(exc)))
        if exc.__context__ is not None:  # hidden by `from None`, but still attached
            self.add(f"{where}: context", "".join(traceback.format_exception(exc.__context__)))


class Secrets:
    def __init__(self):
        self.values: dict[str, str] = {"client secret": CLIENT_SECRET}
        self.counter = 0

    def new(self, kind: str) -> str:
        self.counter += 1
        value = f"{kind.upper().replace(' ', '')}-LeakCanary-{self.counter:03d}-9c8b7a6f5e4d"
        self.values[f"{kind} #{self.counter}"] = value
        return value

    def tokens(self) -> dict:
        return {"access_token": self.new("access token"), "refresh_token": self.new("refresh token"),
                "token_type": "bearer", "expires_in": 7200, "scope": "ADMIN", "created_at": 1607635748}

    def add(self, kind: str, value: str) -> None:
        self.values[f"{kind} #{len(self.values)}"] = value

    def needles(self, value: str) -> list[str]:
        # The start, middle and end of the value, so that a truncated or cut-out copy is found too.
        middle = len(value) // 2
        needles = [value[:12], value[middle - 6: middle + 6], value[-12:]]
        return needles + (["LeakCanary"] if "LeakCanary" in value else [])


# --------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------


@pytest.fixture
def webhook():
    with WebhookReceiver() as receiver:
        yield receiver


def test_no_secret_leaks_anywhere_in_any_flow(admin_client, fake_jira, caplog, settings, monkeypatch,
                                             django_capture_on_commit_callbacks, webhook, run_command):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    monkeypatch.setattr(connections["default"], "force_debug_cursor", True)  # SQL with its parameters at DEBUG
    settings.JIRA_READ_TIMEOUT = 0.5
    settings.JIRA_RETRY_BACKOFF = [0, 0]
    secrets = Secrets()
    seen = Evidence(admin_client)
    jira = fake_jira
    # Alerts go to ADMINS and to a signed webhook whose URL keeps a secret in its path, as Slack's do.
    settings.ADMINS = [("Ops", "ops@example.com")]
    webhook_path = "/services/T0/B0/" + secrets.new("webhook URL path")
    settings.ALERT_WEBHOOK_URL = webhook.base_url + webhook_path
    settings.ALERT_WEBHOOK_SECRET = secrets.new("webhook secret")
    webhook.answer(500)  # the first delivery fails: its log and last_error are searched too

    # --- the add form: a validation error re-renders it, then it is saved ---
    add_url = reverse("admin:alm_accounts_almaccount_add")
    add_page = admin_client.get(add_url)
    callback_id = re.search(r'name="callback_url" value="([^"]+)"', add_page.content.decode()).group(1)
    data = {"alm_type": "jira", "name": "Jira - Leak test", "authentication": "jira_server_oauth2",
            "base_url": jira.base_url, "client_id": "leak-client-id", "client_secret": CLIENT_SECRET,
            "scope": "ADMIN", "callback_url": callback_id}
    rerender = admin_client.post(add_url, {**data, "name": ""})
    assert rerender.status_code == 200 and "errorlist" in rerender.content.decode()
    seen.response("add form re-rendered after an error", rerender)
    rerender = admin_client.post(add_url, {**data, "base_url": "javascript:alert(1)"})
    assert rerender.status_code == 200
    seen.response("add form re-rendered after a base URL error", rerender)
    saved = admin_client.post(add_url, {**data, "_continue": "Save and continue"})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    seen.response("add form saved", saved)
    account = ALMAccount.objects.get(name="Jira - Leak test")
    change_url = reverse("admin:alm_accounts_almaccount_change", args=[account.pk])
    callback_path = urlsplit(account.callback_url).path
    change_data = {**{k: v for k, v in data.items() if k != "callback_url"}, "client_secret": ""}

    rerender = admin_client.post(change_url, {**change_data, "client_secret": CLIENT_SECRET, "name": "",
                                              "_get_auth_token": "Get Auth Token"})
    assert rerender.status_code == 200 and "errorlist" in rerender.content.decode()
    seen.response("change form re-rendered after an error", rerender)

    def button(name: str):
        url = reverse(f"admin:alm_accounts_almaccount_{name}", args=[account.pk])
        response = admin_client.post(url)
        assert response.status_code == 302
        seen.response(f"button {name}", response)

    def start(where: str) -> str:
        response = admin_client.post(change_url, {**change_data, "_get_auth_token": "Get Auth Token"})
        assert response.status_code == 302
        location = response["Location"]
        assert location.startswith(jira.base_url + "/rest/oauth2/latest/authorize?"), location
        seen.authorize_urls.append(location)
        seen.add(f"{where}: Get Auth Token body", response.content)
        state = query_of(location)["state"]
        secrets.add("state", state)
        # Kept server-side only; taken now, as ending the connection or deleting the account deletes it.
        secrets.add("PKCE verifier", PendingAuthorization.objects.filter(account=account).latest("pk").code_verifier)
        return state

    def callback(where: str, **query):
        response = admin_client.get(callback_path, query)
        seen.response(where, response)
        return response

    def connect(where: str, *, token_answer=None, code: str | None = None):
        state = start(where)
        if token_answer is not None:
            token_answer(jira)
        callback(f"{where}: callback", code=code or secrets.new("auth code"), state=state)

    def command(where: str, *args):
        run = run_command(*args, "--concurrency", "1")
        seen.add(f"{where}: stdout", run.out)
        seen.add(f"{where}: stderr", run.err)

    def status():
        return ALMAccount.objects.get(pk=account.pk).status

    def oauth_error(error, status_code=400):
        return lambda j: j.json(TOKEN_PATH, {"error": error, "error_description": f"{error} (from Jira)"},
                                status_code)

    def myself(j):
        j.json(MYSELF_PATH, {"name": "jadmin", "key": "JIRAUSER1", "displayName": "Jira Admin"})

    # --- connect: Get Auth Token, consent, callback ---
    connect("connect", token_answer=lambda j: (j.json(TOKEN_PATH, secrets.tokens()), myself(j)))
    assert status() == ALMAccount.Status.CONNECTED

    # --- test connection ---
    myself(jira)
    jira.json(SERVER_INFO_PATH, {"version": "9.12.1", "baseUrl": jira.base_url, "deploymentType": "Server"})
    button("test_connection")

    # --- refresh: admin button, refresh_tokens command, admin action ---
    jira.json(TOKEN_PATH, secrets.tokens())
    button("refresh_token")
    jira.json(TOKEN_PATH, secrets.tokens())
    command("refresh_tokens --force", "--force")
    jira.json(TOKEN_PATH, secrets.tokens())
    action = admin_client.post(reverse("admin:alm_accounts_almaccount_changelist"),
                               {"action": "refresh_selected", "_selected_action": [account.pk]})
    seen.response("admin action refresh_selected", action)
    assert status() == ALMAccount.Status.CONNECTED

    # --- test connection: 401 -> refresh once -> retry ---
    jira.json(MYSELF_PATH, {"errorMessages": ["unauthorized"]}, 401)
    jira.json(TOKEN_PATH, secrets.tokens())
    myself(jira)
    jira.json(SERVER_INFO_PATH, {"version": "9.12.1", "baseUrl": jira.base_url})
    button("test_connection")

    # --- test connection failing: Jira answers 500 ---
    jira.html(MYSELF_PATH, 500, "<html><body>Internal error</body></html>")
    button("test_connection")

    # --- refresh failures: invalid_client, 500, timeout, invalid_grant ---
    oauth_error("invalid_client", 401)(jira)
    button("refresh_token")
    # The link was refused (its alert went out above); the admin pastes the link's secret again, which asks Jira
    # anew (services.connection.save_account clears the state).
    ALMAccount.objects.filter(pk=account.pk).update(client_refused_at=None, client_checked_at=None)
    jira.html(TOKEN_PATH, 500, "<html><body><h1>HTTP Status 500</h1>Oops</body></html>")
    command("refresh_tokens after a 500", "--force")
    jira.slow(TOKEN_PATH, 1.5)
    button("refresh_token")
    oauth_error("invalid_grant")(jira)
    command("refresh_tokens after invalid_grant", "--force")
    assert status() == ALMAccount.Status.NEEDS_REAUTHORIZATION

    # --- authorized again: the "broken" alert is answered by a "recovered" one ---
    connect("reconnect after invalid_grant", token_answer=lambda j: (j.json(TOKEN_PATH, secrets.tokens()), myself(j)))
    assert status() == ALMAccount.Status.CONNECTED

    # --- disconnect, revocation confirmed ---
    jira.json(REVOKE_PATH, {})
    jira.json(REVOKE_PATH, {})
    button("disconnect")
    assert status() == ALMAccount.Status.NOT_CONNECTED

    # --- connection failures: invalid_client, invalid_grant, 500, timeout, access_denied ---
    connect("connect, invalid_client", token_answer=oauth_error("invalid_client", 401))
    connect("connect, invalid_grant", token_answer=oauth_error("invalid_grant"))
    connect("connect, 500", token_answer=lambda j: j.html(TOKEN_PATH, 500, "<html>Server error</html>"))
    connect("connect, timeout", token_answer=lambda j: j.slow(TOKEN_PATH, 1.5))
    state = start("connect, access_denied")
    callback("connect, access_denied: callback", error="access_denied",
             error_description="The user denied access", state=state)
    assert ALMAccount.objects.get(pk=account.pk).refresh_token is None

    # --- broken callbacks carrying a code ---
    callback("callback without state", code=secrets.new("auth code"))
    unknown = admin_client.get(f"/oauth/jira/callback/{'x' * 22}/",
                               {"code": secrets.new("auth code"), "state": "s" * 43})
    assert unknown.status_code == 400
    seen.response("callback of an unknown account", unknown)

    # --- connected, but reading the Jira user fails; then a replay of that callback ---
    state = start("connect, /myself fails")
    jira.json(TOKEN_PATH, secrets.tokens())
    jira.html(MYSELF_PATH, 503, "<html>Service unavailable</html>")
    code = secrets.new("auth code")
    callback("connect, /myself fails: callback", code=code, state=state)
    assert status() == ALMAccount.Status.CONNECTED
    callback("replayed callback", code=code, state=state)

    # --- disconnect, revocation failing ---
    jira.html(REVOKE_PATH, 500, "<html>error</html>")
    jira.html(REVOKE_PATH, 500, "<html>error</html>")
    button("disconnect")
    assert status() == ALMAccount.Status.NOT_CONNECTED

    # --- a changed Client ID ends the connection: tokens wiped, revoked at the old link after the commit ---
    connect("connect again", token_answer=lambda j: (j.json(TOKEN_PATH, secrets.tokens()), myself(j)))
    assert status() == ALMAccount.Status.CONNECTED
    jira.json(REVOKE_PATH, {})
    jira.html(REVOKE_PATH, 500, "<html>error</html>")
    with django_capture_on_commit_callbacks(execute=True):
        ended = admin_client.post(change_url, {**change_data, "client_id": "leak-client-id-2", "_save": "Save"})
    assert ended.status_code == 302, ended.content.decode()[:2000]
    seen.response("Client ID changed, connection ended", ended)
    assert status() == ALMAccount.Status.NOT_CONNECTED
    change_data["client_id"] = "leak-client-id-2"

    # --- exception texts straight from the client and the services ---
    verifier = PKCE.create().verifier
    secrets.add("PKCE verifier", verifier)
    client = JiraClient(jira.base_url, "leak-client-id", CLIENT_SECRET, timeout=(2, 0.5))
    for name, script in [("invalid_client", oauth_error("invalid_client", 401)),
                         ("500", lambda j: j.html(TOKEN_PATH, 500, "<html>x</html>")),
                         ("timeout", lambda j: j.slow(TOKEN_PATH, 1.5)),
                         ("no refresh token", lambda j: j.json(TOKEN_PATH, {"access_token": secrets.new("access token"),
                                                                          "expires_in": 60}))]:
        script(jira)
        with pytest.raises(JiraError) as failure:
            client.exchange_code(code=secrets.new("auth code"), redirect_uri=account.callback_url,
                                 code_verifier=verifier)
        seen.exception(f"JiraClient.exchange_code, {name}", failure.value)
    jira.json(TOKEN_PATH, secrets.tokens())
    tokens = client.refresh(refresh_token=secrets.new("refresh token"), redirect_uri=account.callback_url)
    seen.add("repr of a TokenSet", repr(tokens))
    seen.add("str of a TokenSet", str(tokens))
    seen.add("repr of a PKCE", repr(PKCE.create()))
    seen.add("repr of a JiraClient", repr(client))
    assert isinstance(tokens, TokenSet)
    with pytest.raises(services.ServiceError) as failure:
        services.test_connection(account=ALMAccount.objects.get(pk=account.pk), actor="test")
    seen.exception("services.test_connection, not connected", failure.value)

    # --- the alerts are delivered (a failed webhook retried), and what was sent is kept ---
    services.deliver_pending()
    for row in Alert.objects.values("last_error"):
        seen.add("alert after a failed delivery", repr(row))
    services.deliver_pending(now=timezone.now() + timedelta(minutes=6))
    assert [(a.event, a.reason, a.email_state, a.webhook_state) for a in Alert.objects.order_by("pk")] == [
        ("broken", "client_refused", "delivered", "delivered"),
        ("broken", "needs_reauthorization", "delivered", "delivered"), ("recovered", "", "delivered", "delivered")]
    assert len(mail.outbox) == 3 and len(webhook.received) == 4
    for message in mail.outbox:
        seen.add(f"e-mail {message.subject}", message.message().as_string())
    for request in webhook.received:  # its path is the configured URL's, secret by design: not searched
        seen.add("webhook request headers", "\n".join(f"{k}: {v}" for k, v in request.headers.items()))
        seen.add("webhook request body", request.body)
    for row in Alert.objects.values("subject", "message", "link", "recipients", "last_error"):
        seen.add("alert row", repr(row))
    alert = Alert.objects.order_by("pk").first()

    # --- everything an admin can open afterwards ---
    for where, url in [("change page", change_url),
                       ("account list", reverse("admin:alm_accounts_almaccount_changelist")),
                       ("account history", reverse("admin:alm_accounts_almaccount_history", args=[account.pk])),
                       ("audit trail list", reverse("admin:alm_accounts_authevent_changelist")),
                       ("alerts list", reverse("admin:alm_accounts_alert_changelist")),
                       ("an alert", reverse("admin:alm_accounts_alert_change", args=[alert.pk])),
                       ("admin log", reverse("admin:index"))]:
        page = admin_client.get(url)
        assert page.status_code == 200, where
        seen.response(where, page)

    # --- the account is deleted while connected: revoked after the commit, its audit trail kept ---
    connect("connect before deleting", token_answer=lambda j: (j.json(TOKEN_PATH, secrets.tokens()), myself(j)))
    jira.json(REVOKE_PATH, {})
    jira.json(REVOKE_PATH, {})
    with django_capture_on_commit_callbacks(execute=True):
        deleted = admin_client.post(reverse("admin:alm_accounts_almaccount_delete", args=[account.pk]),
                                    {"post": "yes"})
    assert deleted.status_code == 302, deleted.content.decode()[:2000]
    seen.response("account deleted", deleted)
    assert not ALMAccount.objects.filter(pk=account.pk).exists()
    seen.response("audit trail list after the deletion",
                  admin_client.get(reverse("admin:alm_accounts_authevent_changelist")))
    for event in AuthEvent.objects.all():
        seen.add(f"audit event {event.kind}", f"{event.actor} {event.message}")
    for row in ALMAccount.objects.values("name", "last_error", "token_scope", "connected_as_name"):
        seen.add("account row", repr(row))
    for record in caplog.records:
        seen.add(f"log {record.name} {record.levelname}", logging.Formatter().format(record))
        seen.add(f"log {record.name} args", repr(record.args))
    seen.add("all logs as text", caplog.text)
    json_lines = JsonFormatter()  # LOG_FORMAT=json: every extra field of a record is written too
    for record in caplog.records:
        seen.add(f"log {record.name} {record.levelname} as JSON", json_lines.format(record))

    # --- the flows really ran, with the secrets really in use; every answer was one scripted here ---
    assert jira.unexpected == [] and jira.unscripted == [] and jira.rejected == [], (
        jira.unexpected, jira.unscripted, jira.rejected)
    assert jira.pending() == {}, jira.pending()
    token_forms = [call.form for call in jira.calls_to(TOKEN_PATH)]
    assert len(token_forms) >= 18
    assert all(form["client_secret"] == CLIENT_SECRET for form in token_forms)
    assert any(form.get("code_verifier") for form in token_forms)
    bearer = [call.headers.get("Authorization", "") for call in jira.calls_to(MYSELF_PATH)]
    assert any(value.startswith("Bearer ACCESSTOKEN-LeakCanary-") for value in bearer)
    kinds = set(AuthEvent.objects.filter(account_name=data["name"]).values_list("kind", "outcome"))
    assert {(k, o) for k in AuthEvent.Kind.values for o in AuthEvent.Outcome.values} - kinds <= {
        (AuthEvent.Kind.AUTHORIZATION_STARTED, "failed"), (AuthEvent.Kind.CONNECTED, "failed"),
        (AuthEvent.Kind.REFRESHED, "failed"), (AuthEvent.Kind.REFRESH_FAILED, "ok"),
        (AuthEvent.Kind.AUTHORIZATION_FAILED, "ok"), (AuthEvent.Kind.DISCONNECTED, "failed"),
        (AuthEvent.Kind.CONNECTION_ENDED, "failed"), (AuthEvent.Kind.ACCOUNT_DELETED, "failed"),
        # Needs a database that refuses a rotated pair: tests/test_grant_failures_pg.py.
        (AuthEvent.Kind.TOKENS_NOT_STORED, "ok"), (AuthEvent.Kind.TOKENS_NOT_STORED, "failed"),
    }
    assert len(caplog.records) > 100  # SQL and urllib3 at DEBUG really were captured
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    assert any(r.name == "django.db.backends" for r in caplog.records)
    assert len([k for k in secrets.values if k.startswith("state")]) >= 7
    assert len([k for k in secrets.values if k.startswith("PKCE")]) >= 8

    # --- and nowhere a secret ---
    leaks = []
    for where, text in seen.items:
        for kind, value in secrets.values.items():
            if any(needle in text for needle in secrets.needles(value)):
                leaks.append(f"{kind} in {where}")
    for url in seen.authorize_urls:  # the state belongs there, nothing else does
        for kind, value in secrets.values.items():
            if not kind.startswith("state") and any(needle in url for needle in secrets.needles(value)):
                leaks.append(f"{kind} in the authorize URL")
    assert not leaks, "\n".join(leaks)




@pytest.fixture
def error_reports(settings, admin_client):
    """What Django's error reporting (error e-mails, DEBUG off) would send for each unexpected failure."""
    from django.core.signals import got_request_exception
    from django.views.debug import ExceptionReporter

    reports = []

    def report(sender, request, **kwargs):
        reporter = ExceptionReporter(request, *sys.exc_info(), is_email=True)
        reports.append(reporter.get_traceback_text() + reporter.get_traceback_html())

    settings.DEBUG = False
    admin_client.raise_request_exception = False
    got_request_exception.connect(report)
    yield reports
    got_request_exception.disconnect(report)


def test_error_reports_never_show_the_typed_client_secret(admin_client, error_reports, monkeypatch):
    from alm_accounts.admin import ALMAccountAdmin

    def broken_save(*args, **kwargs):
        raise RuntimeError("an unexpected failure while saving")

    monkeypatch.setattr(ALMAccountAdmin, "save_model", broken_save)
    add_page = admin_client.get("/admin/alm_accounts/almaccount/add/").content.decode()
    callback_id = re.search(r'name="callback_url" value="([^"]+)"', add_page).group(1)
    response = admin_client.post("/admin/alm_accounts/almaccount/add/", {
        "alm_type": "jira", "name": "Broken", "authentication": "jira_server_oauth2",
        "base_url": "https://jira.example.com", "callback_url": callback_id, "client_id": "cid",
        "client_secret": "typed-secret-5b1e9", "scope": "ADMIN"})

    assert response.status_code == 500
    assert len(error_reports) == 1 and "an unexpected failure while saving" in error_reports[0]
    assert "typed-secret-5b1e9" not in error_reports[0]
    assert "typed-secret-5b1e9" not in response.content.decode()


def test_error_reports_of_an_unexpected_failure_in_the_callback_hide_code_state_and_verifier(
        admin_client, account, error_reports, monkeypatch):
    def exchange_that_breaks(self, **arguments):
        # Called with the code and the verifier: the report must hide this frame's variables too.
        raise RuntimeError("an unexpected failure in the Jira client")

    start = admin_client.post(reverse("admin:alm_accounts_almaccount_change", args=[account.pk]), {
        "alm_type": account.alm_type, "name": account.name, "authentication": account.authentication,
        "base_url": account.base_url, "client_id": account.client_id, "client_secret": "", "scope": "ADMIN",
        "_get_auth_token": "Get Auth Token"})
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    verifier = PendingAuthorization.objects.get(account=account).code_verifier
    # Patched on the class, so the failure happens wherever the services build their client.
    monkeypatch.setattr(JiraClient, "exchange_code", exchange_that_breaks)

    response = admin_client.get(urlsplit(account.callback_url).path,
                                {"code": "AUTHCODE-unexpected-77", "state": state})

    assert response.status_code == 500
    assert len(error_reports) == 1 and "an unexpected failure in the Jira client" in error_reports[0]
    for secret in ("AUTHCODE-unexpected-77", state, verifier):
        assert secret not in error_reports[0]
        assert secret not in response.content.decode()


def test_a_service_accounts_secret_and_tokens_leak_nowhere(admin_client, mocked_jira, caplog, settings, webhook,
                                                          django_capture_on_commit_callbacks, run_command):
    """Issue 22: a service account saved, used, refused (its broken alert mailed and posted) and disconnected. Its
    Client Secret goes only to its token endpoint and its tokens only to the Jira REST API; neither appears in a
    page, a log record, a message, an audit event, an alert, an e-mail or a webhook."""
    secret, token = "SERVICESECRET-LeakCanary-9e1c", "SERVICETOKEN-LeakCanary-3f7a"
    token_url, myself_url = f"{JIRA}/rest/oauth2/latest/token", f"{JIRA}/rest/api/2/myself"
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.ALERT_WEBHOOK_URL = webhook.base_url + "/hook"
    settings.ALERT_WEBHOOK_SECRET = "webhook-signing-key"
    mocked_jira.add_passthru(webhook.base_url)
    mocked_jira.post(token_url, json={"access_token": token, "token_type": "bearer", "expires_in": 3600,
                                      "scope": "READ"})
    mocked_jira.get(myself_url, json={"name": "svc", "displayName": "Service"})
    mocked_jira.post(token_url, status=401, json={"error": "invalid_client", "error_description": "disabled"})
    add_url = reverse("admin:alm_accounts_almaccount_add")
    callback_id = admin_client.get(add_url).context["adminform"].form["callback_url"].initial
    pages = [admin_client.post(add_url, {
        "alm_type": "jira", "name": "Jira - Service", "authentication": "jira_server_service_account",
        "base_url": JIRA, "callback_url": callback_id, "scope": "READ", "service_client_id": "svc-id",
        "service_client_secret": secret}, follow=True)]
    account = ALMAccount.objects.get()
    ALMAccount.objects.filter(pk=account.pk).update(last_refreshed_at=timezone.now() - timedelta(days=2))
    run = run_command("--concurrency", "1")
    services.deliver_pending()
    change_url = reverse("admin:alm_accounts_almaccount_change", args=[account.pk])
    pages.append(admin_client.get(change_url))
    with django_capture_on_commit_callbacks(execute=True):
        pages.append(admin_client.post(reverse("admin:alm_accounts_almaccount_disconnect", args=[account.pk]),
                                       follow=True))

    for call in mocked_jira.calls:
        body = call.request.body or b""
        if secret in (body.decode() if isinstance(body, bytes) else body):
            assert call.request.url == token_url
        if token in call.request.headers.get("Authorization", ""):
            assert call.request.url.startswith(f"{JIRA}/rest/api/")
    assert len(mail.outbox) == 1 and len(webhook.received) == 1  # the broken alert, sent both ways
    seen = [page.content.decode() + str(dict(page.headers)) for page in pages]
    seen += [run.out, run.err, "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)]
    seen += [message.message().as_string() for message in mail.outbox]
    seen += [request.body.decode() + str(request.headers) for request in webhook.received]
    seen += [repr(list(AuthEvent.objects.values())), repr(list(Alert.objects.values()))]
    for text in seen:
        assert secret not in text and token not in text
