"""How calls leave for Jira: no cookies, the trusted CAs (default, JIRA_CA_BUNDLE, per account) and the proxy.

Against the shared fake Jira on a real socket, served over TLS with a CA made
for the test (trustme): what the client trusts is exercised by a real TLS
handshake, and the egress proxy is a real HTTP CONNECT proxy on a local socket.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import selectors
import socket
import socketserver
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import certifi
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from alm_accounts import egress, services
from alm_accounts.jira import MYSELF_PATH, JiraClient, JiraUnavailable, session_for
from alm_accounts.models import ALMAccount
from alm_accounts.services import RefreshOutcome
from tests.conftest import add_form_data, production_settings, run
from tests.doubles.fake_jira import FakeJira
from tests.doubles.servers import free_port

REDIRECT_URI = "http://testserver/oauth/jira/callback/egress/"


# --------------------------------------------------------------------------
# A CA made for the test, a Jira whose certificate it signed, a CONNECT proxy
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def company_ca() -> trustme.CA:
    return trustme.CA(organization_name="Example Corp internal CA")


@pytest.fixture
def tls_jira(company_ca):
    """The fake Jira on https://127.0.0.1:<port>/jira with a certificate signed by the company CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    company_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with FakeJira(tls_context=context) as fake:
        yield fake


def pem_of(ca: trustme.CA) -> str:
    return ca.cert_pem.bytes().decode()


def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "company-ca.pem"
    path.write_bytes(ca.cert_pem.bytes())
    return str(path)


class ConnectProxy:
    """An egress proxy as companies run them: HTTPS goes through `CONNECT host:port` tunnels (counted)."""

    def __init__(self):
        self.connects: list[str] = []
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
                if method != "CONNECT":
                    self.request.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    return
                proxy.connects.append(target)
                host, port = target.rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=10) as upstream:
                    self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    _pipe(self.request, upstream)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while True:
            for key, _ in selector.select(timeout=10):
                try:
                    data = key.fileobj.recv(65536)
                    if data:
                        key.data.sendall(data)
                except OSError:  # one side gave up (e.g. the client refused the certificate)
                    data = b""
                if not data:
                    return


@pytest.fixture
def proxy():
    server = ConnectProxy()
    yield server
    server.stop()


def account_on(fake: FakeJira, name: str, *, ca_pem: str = "") -> ALMAccount:
    return ALMAccount.objects.create(name=name, base_url=fake.base_url, client_id=f"client-{name}",
                                     client_secret=f"secret-{name}", jira_ca_certificate=ca_pem)


def connected_on(fake: FakeJira, name: str, *, ca_pem: str = "") -> ALMAccount:
    """An account connected to `fake` through a grant of the Jira user "user-<name>"."""
    account = account_on(fake, name, ca_pem=ca_pem)
    access, refresh = fake.add_grant(name, redirect_uri=account.callback_url, client_id=account.client_id,
                                     client_secret=account.client_secret)
    account.access_token, account.refresh_token = access, refresh
    account.token_expires_at = timezone.now() + timedelta(hours=1)
    account.status = ALMAccount.Status.CONNECTED
    account.save()
    return account


def client_for(account: ALMAccount) -> JiraClient:
    """As services.client_for builds it: the account's credentials and its egress options."""
    return JiraClient(account.base_url, account.client_id, account.client_secret, timeout=(5, 5),
                      **egress.client_options(account))


def grant_for(fake: FakeJira, account: ALMAccount, user: str) -> tuple[str, str]:
    return fake.add_grant(account.name, redirect_uri=REDIRECT_URI, client_id=account.client_id,
                          client_secret=account.client_secret, user=user)


def assert_refused_by_tls(fake: FakeJira, call) -> None:
    calls_before = len(fake.calls)
    with pytest.raises(JiraUnavailable) as refused:
        call()
    assert "TLS handshake with Jira failed" in str(refused.value)
    assert refused.value.reached_jira is False
    assert len(fake.calls) == calls_before  # nothing was sent: no token, no secret


# --------------------------------------------------------------------------
# 1. Cookies: Jira's JSESSIONID never travels with another identity's call
# --------------------------------------------------------------------------


def test_jira_session_cookies_are_never_kept_so_each_call_is_its_own_identity(fake_jira):
    """Two accounts (two Jira users) on one Jira host share a pooled session; Jira sets JSESSIONID on each
    Bearer call. A replayed cookie would make Jira act as the cookie's user instead of the token's."""
    alice_token, _ = fake_jira.add_grant("a", redirect_uri=REDIRECT_URI, client_id="a", client_secret="s",
                                         user="alice")
    bob_token, _ = fake_jira.add_grant("b", redirect_uri=REDIRECT_URI, client_id="b", client_secret="s",
                                       user="bob")
    answered_as = [
        JiraClient(fake_jira.base_url, client_id).get(MYSELF_PATH, access_token=token)["name"]
        for _ in range(2)
        for client_id, token in (("a", alice_token), ("b", bob_token))
    ]

    assert answered_as == ["alice", "bob", "alice", "bob"]
    assert fake_jira.identity_mismatches == []
    myself_calls = fake_jira.calls_to("/jira" + MYSELF_PATH)
    assert len(myself_calls) == 4
    assert [call for call in myself_calls if "Cookie" in call.headers] == []
    assert len(session_for(fake_jira.base_url).cookies) == 0


# --------------------------------------------------------------------------
# 2. Trust: certifi by default, JIRA_CA_BUNDLE instead of it, an account's own CA in addition
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_jira_signed_by_an_unknown_ca_is_refused_and_nothing_is_sent(tls_jira):
    account = account_on(tls_jira, "no-ca")
    access, refresh = grant_for(tls_jira, account, "alice")

    assert_refused_by_tls(tls_jira, lambda: client_for(account).myself(access_token=access))
    assert_refused_by_tls(tls_jira, lambda: client_for(account).refresh(refresh_token=refresh,
                                                                         redirect_uri=REDIRECT_URI))
    assert tls_jira.refreshes["no-ca"] == 0


@pytest.mark.django_db
def test_the_accounts_ca_certificate_trusts_its_jira_for_that_account_only(tls_jira, company_ca):
    """The Jira CA certificate (PEM) of one account: Test connection and a refresh work for it, while another
    account on the same Jira host, without the PEM, is still refused before and after (no shared trust)."""
    with_ca = account_on(tls_jira, "with-ca", ca_pem=pem_of(company_ca))
    without = account_on(tls_jira, "without-ca")
    access, refresh = grant_for(tls_jira, with_ca, "alice")
    other_access, _ = grant_for(tls_jira, without, "bob")

    assert_refused_by_tls(tls_jira, lambda: client_for(without).myself(access_token=other_access))

    assert client_for(with_ca).myself(access_token=access)["name"] == "alice"
    tokens = client_for(with_ca).refresh(refresh_token=refresh, redirect_uri=REDIRECT_URI)
    assert tls_jira.refreshes["with-ca"] == 1
    assert client_for(with_ca).myself(access_token=tokens.access_token)["name"] == "alice"

    assert_refused_by_tls(tls_jira, lambda: client_for(without).myself(access_token=other_access))


@pytest.mark.django_db
def test_the_accounts_ca_is_added_to_the_default_trust_not_instead_of_it(tls_jira, company_ca):
    """An account whose Jira moves to a public certificate keeps working: certifi's CAs stay in its bundle."""
    account = account_on(tls_jira, "with-ca", ca_pem=pem_of(company_ca))
    bundle = Path(client_for(account).session.verify).read_bytes()

    assert Path(certifi.where()).read_bytes().strip() in bundle
    assert company_ca.cert_pem.bytes().strip() in bundle


@pytest.mark.django_db
def test_the_combined_bundle_is_written_once_in_a_private_directory(tls_jira, company_ca):
    account = account_on(tls_jira, "with-ca", ca_pem=pem_of(company_ca))
    first = Path(egress.client_options(account)["verify"])
    mtime = first.stat().st_mtime_ns

    assert Path(egress.client_options(account)["verify"]) == first
    assert first.stat().st_mtime_ns == mtime  # reused, not rewritten
    assert stat.S_IMODE(os.stat(first.parent).st_mode) == 0o700
    assert first.parent.stat().st_uid == os.getuid()

    first.unlink()  # a /tmp cleaner removed it: the next call writes it again
    assert client_for(account).myself(access_token=grant_for(tls_jira, account, "alice")[0])["name"] == "alice"


@pytest.mark.django_db
def test_a_cache_directory_others_could_write_to_is_never_used(company_ca, tmp_path, monkeypatch):
    """Another local user must not be able to plant a CA that our calls to Jira would then trust."""
    monkeypatch.setattr(egress.tempfile, "gettempdir", lambda: str(tmp_path))
    planted = tmp_path / f"kendis-jira-ca-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    account = ALMAccount(name="x", base_url="https://jira.example.com", jira_ca_certificate=pem_of(company_ca))

    with pytest.raises(egress.EgressError, match="not a private directory"):
        egress.client_options(account)
    assert list(planted.iterdir()) == []

    planted.chmod(0o700)
    assert Path(egress.client_options(account)["verify"]).parent == planted


@pytest.mark.django_db
def test_jira_ca_bundle_setting_trusts_the_company_ca_for_every_account(tls_jira, company_ca, tmp_path):
    first, second = account_on(tls_jira, "first"), account_on(tls_jira, "second")
    first_access, _ = grant_for(tls_jira, first, "alice")
    second_access, second_refresh = grant_for(tls_jira, second, "bob")

    with override_settings(JIRA_CA_BUNDLE=ca_file(company_ca, tmp_path)):
        assert client_for(first).myself(access_token=first_access)["name"] == "alice"
        assert client_for(second).myself(access_token=second_access)["name"] == "bob"
        assert client_for(second).refresh(refresh_token=second_refresh, redirect_uri=REDIRECT_URI).access_token

    assert_refused_by_tls(tls_jira, lambda: client_for(first).myself(access_token=first_access))


@pytest.mark.django_db
def test_jira_ca_bundle_replaces_certifi_and_an_accounts_ca_adds_to_it(company_ca, tmp_path):
    """JIRA_CA_BUNDLE is used *instead of* certifi's bundle (a company that trusts only its own CAs)."""
    other_ca = trustme.CA()
    account = ALMAccount(name="x", base_url="https://jira.example.com", jira_ca_certificate=pem_of(other_ca))
    with override_settings(JIRA_CA_BUNDLE=ca_file(company_ca, tmp_path)):
        bundle = Path(egress.client_options(account)["verify"]).read_bytes()

    assert company_ca.cert_pem.bytes().strip() in bundle and other_ca.cert_pem.bytes().strip() in bundle
    assert Path(certifi.where()).read_bytes().strip() not in bundle


@pytest.mark.django_db
def test_a_jira_with_a_self_signed_certificate_is_trusted_by_pasting_that_certificate(tmp_path):
    """Jira's Tomcat often serves a self-signed certificate made with keytool (no CA flag): it is accepted on
    save and trusted as itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jira.internal")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    pem = certificate.public_bytes(Encoding.PEM).decode()

    assert validation_error(pem) is None
    with FakeJira(tls_context=context) as fake:
        trusting = account_on(fake, "self-signed", ca_pem=pem)
        other = account_on(fake, "other")
        assert client_for(trusting).myself(access_token=grant_for(fake, trusting, "alice")[0])["name"] == "alice"
        assert_refused_by_tls(fake, lambda: client_for(other).myself(access_token=grant_for(fake, other, "bob")[0]))


@pytest.mark.django_db
def test_the_services_reach_jira_the_accounts_way(tls_jira, company_ca, proxy, settings):
    """Test connection and the refresh under the row lock (services.client_for) use the account's CA and the
    egress proxy; another account on the same Jira host, without the CA, fails with the TLS message."""
    with_ca = connected_on(tls_jira, "with-ca", ca_pem=pem_of(company_ca))
    without = connected_on(tls_jira, "without-ca")
    settings.JIRA_PROXY_URL = proxy.url

    assert services.test_connection(account=with_ca, actor="test").endswith("as User with-ca.")
    assert services.refresh_account(account_id=with_ca.pk, actor="test").outcome is RefreshOutcome.REFRESHED
    assert tls_jira.refreshes["with-ca"] == 1
    assert proxy.connects

    calls_before = len(tls_jira.calls)
    refused = services.refresh_account(account_id=without.pk, actor="test")
    assert refused.outcome is RefreshOutcome.FAILED and "TLS" in refused.message
    assert len(tls_jira.calls) == calls_before


@pytest.mark.django_db
def test_an_unreadable_stored_ca_certificate_stops_the_call_with_a_message(tls_jira, company_ca, tmp_path):
    """A PEM that never went through the form (a script, a bulk update) is not silently dropped."""
    account = connected_on(tls_jira, "broken-pem", ca_pem=pem_of(company_ca))
    ALMAccount.objects.filter(pk=account.pk).update(jira_ca_certificate="-----BEGIN CERTIFICATE-----\nxx")
    account.refresh_from_db()

    with pytest.raises(services.ServiceError, match="Jira CA certificate \\(PEM\\) cannot be read"):
        services.test_connection(account=account, actor="test")
    bundle = tmp_path / "gone.pem"
    with override_settings(JIRA_CA_BUNDLE=str(bundle)), pytest.raises(egress.EgressError, match="JIRA_CA_BUNDLE"):
        egress.client_options(account)
    assert tls_jira.calls == []


def test_certificate_verification_cannot_be_switched_off():
    with pytest.raises(ValueError, match="verification"):
        JiraClient("https://jira.example.com", verify=False)


# --------------------------------------------------------------------------
# 3. The egress proxy
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_jira_calls_go_through_the_egress_proxy_when_one_is_configured(tls_jira, company_ca, proxy):
    account = account_on(tls_jira, "proxied", ca_pem=pem_of(company_ca))
    access, refresh = grant_for(tls_jira, account, "alice")
    jira_host = tls_jira.base_url.split("/")[2]

    assert client_for(account).myself(access_token=access)["name"] == "alice"
    assert proxy.connects == []  # no proxy configured: straight to Jira

    with override_settings(JIRA_PROXY_URL=proxy.url):
        tokens = client_for(account).refresh(refresh_token=refresh, redirect_uri=REDIRECT_URI)
        assert client_for(account).myself(access_token=tokens.access_token)["name"] == "alice"
    assert proxy.connects and set(proxy.connects) == {jira_host}
    assert tls_jira.refreshes["proxied"] == 1


@pytest.mark.django_db
def test_an_unreachable_or_refusing_proxy_is_named_and_known_not_to_have_reached_jira(tls_jira, company_ca):
    """A refresh that never got through the proxy did not rotate anything: it may be retried, and the admin is
    told to look at the proxy, not at Jira."""
    account = account_on(tls_jira, "proxied", ca_pem=pem_of(company_ca))
    _, refresh = grant_for(tls_jira, account, "alice")
    refusing = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_refuse_one_connect, args=(refusing,), daemon=True).start()

    for proxy_url in (f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{refusing.getsockname()[1]}"):
        with override_settings(JIRA_PROXY_URL=proxy_url), pytest.raises(JiraUnavailable) as failed:
            client_for(account).refresh(refresh_token=refresh, redirect_uri=REDIRECT_URI)
        assert "proxy" in str(failed.value) and "JIRA_PROXY_URL" in str(failed.value)
        assert failed.value.reached_jira is False
    refusing.close()
    assert tls_jira.calls == []


def _refuse_one_connect(server: socket.socket) -> None:
    connection, _ = server.accept()
    with connection:
        connection.recv(4096)
        connection.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.django_db
def test_hosts_in_jira_no_proxy_bypass_the_egress_proxy(tls_jira, company_ca, proxy):
    account = account_on(tls_jira, "direct", ca_pem=pem_of(company_ca))
    access, _ = grant_for(tls_jira, account, "alice")

    with override_settings(JIRA_PROXY_URL=proxy.url, JIRA_NO_PROXY=["jira.example.com", "127.0.0.1"]):
        assert client_for(account).myself(access_token=access)["name"] == "alice"
    assert proxy.connects == []


@pytest.mark.parametrize(("host", "bypassed"), [
    ("jira.example.com", True), ("JIRA.example.com", True), ("sub.jira.example.com", True),
    ("example.com", False), ("badjira.example.com", False), ("intranet.corp", True), ("a.intranet.corp", True),
])
def test_no_proxy_entries_match_the_host_and_its_subdomains(host, bypassed):
    assert egress.bypasses_proxy(host, ["jira.example.com", ".intranet.corp"]) is bypassed


# --------------------------------------------------------------------------
# 4. The account's "Jira CA certificate (PEM)" is validated on save
# --------------------------------------------------------------------------


def validation_error(pem: str) -> str | None:
    account = ALMAccount(name="Jira - PEM", base_url="https://jira.example.com", jira_ca_certificate=pem)
    try:
        account.full_clean(exclude=["callback_id"])
    except ValidationError as error:
        return " ".join(error.message_dict.get("jira_ca_certificate", [])) or None
    return None


@pytest.mark.django_db
def test_a_ca_certificate_and_a_chain_of_two_are_accepted(company_ca):
    intermediate = company_ca.create_child_ca()
    assert validation_error(pem_of(company_ca)) is None
    assert validation_error(pem_of(intermediate) + "\n" + pem_of(company_ca)) is None
    # openssl's "subject=" lines around the blocks are what people paste; they are harmless.
    assert validation_error(f"subject=CN=Example Corp\n{pem_of(company_ca)}") is None
    assert validation_error("") is None


@pytest.mark.django_db
def test_a_private_key_is_refused_with_a_clear_message(company_ca):
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    message = validation_error(key)
    assert message == "This looks like a private key: paste the CA's certificate only."
    assert "This looks like a private key" in validation_error(pem_of(company_ca) + key)


@pytest.mark.django_db
@pytest.mark.parametrize("garbage", [
    "hello",
    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    "-----BEGIN CERTIFICATE-----\nMIIB\n",
])
def test_garbage_is_refused(garbage):
    assert "certificate" in (validation_error(garbage) or "")


@pytest.mark.django_db
def test_a_server_certificate_is_refused_and_the_ca_asked_for(company_ca):
    leaf = company_ca.issue_cert("jira.example.com").cert_chain_pems[0].bytes().decode()
    assert "not a CA" in (validation_error(leaf) or "")


@pytest.mark.django_db
def test_more_than_64_kb_is_refused(company_ca):
    assert "64 kB" in (validation_error(pem_of(company_ca) * 100) or "")


# --------------------------------------------------------------------------
# 5. Settings: a bad CA bundle or proxy stops the start with the variable's name
# --------------------------------------------------------------------------


@pytest.fixture
def production_env(tmp_path) -> dict[str, str]:
    from cryptography.fernet import Fernet

    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "ENV_FILE": "",
        "DJANGO_SETTINGS_MODULE": "kendis_integration.settings", "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "kendis.example.com", "PUBLIC_BASE_URL": "https://kendis.example.com",
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(), "DATABASE_URL": f"sqlite:///{tmp_path / 'db'}",
    }


def test_the_egress_settings_are_read_from_the_environment(production_env, company_ca, tmp_path):
    env = {**production_env, "JIRA_CA_BUNDLE": ca_file(company_ca, tmp_path),
           "JIRA_PROXY_URL": "http://proxy.corp.example:3128", "JIRA_NO_PROXY": "jira.corp.example, .intranet"}
    values = production_settings(env, "[settings.JIRA_CA_BUNDLE, settings.JIRA_PROXY_URL, settings.JIRA_NO_PROXY]")
    assert values == [ca_file(company_ca, tmp_path), "http://proxy.corp.example:3128",
                      ["jira.corp.example", ".intranet"]]
    assert production_settings(production_env, "[settings.JIRA_CA_BUNDLE, settings.JIRA_PROXY_URL]") == ["", ""]


@pytest.mark.parametrize("content", [None, b"", b"not a certificate\n", "key"])
def test_a_jira_ca_bundle_without_a_certificate_stops_the_start(production_env, tmp_path, content):
    path = tmp_path / "bundle.pem"
    if content == "key":
        content = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    if content is not None:
        path.write_bytes(content)
    result = run({**production_env, "JIRA_CA_BUNDLE": str(path)}, "manage.py", "check")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    # One line, not a traceback (issue 19): manage.py reports configuration errors itself, exit code 78.
    assert last_line.startswith("Configuration error: ") and "JIRA_CA_BUNDLE" in last_line and result.returncode == 78
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("url", [
    "proxy.corp.example:3128", "socks5://proxy.corp.example:1080", "http://", "http://proxy:99999",
    "http://proxy.corp.example:3128/some/path", "http://proxy.corp.example:3128?x=1",
])
def test_a_malformed_jira_proxy_url_stops_the_start(production_env, url):
    result = run({**production_env, "JIRA_PROXY_URL": url}, "manage.py", "check")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    # One line, not a traceback (issue 19): manage.py reports configuration errors itself, exit code 78.
    assert last_line.startswith("Configuration error: ") and "JIRA_PROXY_URL" in last_line and result.returncode == 78
    assert "Traceback" not in result.stderr


def test_the_proxy_password_is_not_repeated_in_the_error(production_env):
    result = run({**production_env, "JIRA_PROXY_URL": "ftp://user:pa55word-x@proxy.corp.example"},
                 "manage.py", "check")
    assert result.returncode != 0 and "JIRA_PROXY_URL" in result.stderr
    assert "pa55word-x" not in result.stderr


def test_a_malformed_jira_no_proxy_entry_stops_the_start(production_env):
    result = run({**production_env, "JIRA_NO_PROXY": "jira.corp.example,http://x/"}, "manage.py", "check")
    assert result.returncode != 0
    assert "JIRA_NO_PROXY" in result.stderr.strip().splitlines()[-1]



@pytest.mark.django_db
def test_a_private_key_pasted_into_the_admin_form_is_refused_and_not_shown_back(admin_client, company_ca):
    """The admin form says why, and the page does not carry the key back to the browser."""
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    key_body = key.splitlines()[1]
    add_url = reverse("admin:alm_accounts_almaccount_add")
    callback_id = re.search(r'name="callback_url" value="([^"]*)"', admin_client.get(add_url).text).group(1)

    response = admin_client.post(add_url, add_form_data(callback_id, jira_ca_certificate=key))

    assert response.status_code == 200 and not ALMAccount.objects.exists()
    assert "This looks like a private key: paste the CA&#x27;s certificate only." in response.text
    assert key_body not in response.text

    response = admin_client.post(add_url, add_form_data(callback_id, jira_ca_certificate=pem_of(company_ca)),
                                 follow=True)
    assert ALMAccount.objects.get().jira_ca_certificate.strip() == pem_of(company_ca).strip()
