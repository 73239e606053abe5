"""Is this Jira Data Center base URL really a Jira, before the admin is sent there for consent?

A typo host, https against an http Jira, a page pasted from the address bar
or a wrong context path would otherwise end on the browser's "This site can't
be reached", ERR_SSL_PROTOCOL_ERROR or Jira's own 404, with nothing in our
screen to say what went wrong. Jira DC answers `GET /rest/api/2/serverInfo`
anonymously, so one short call tells: reachable, TLS, context path, Jira.

The call goes out as every call to Jira does (egress: the account's CA, the
proxy; the pooled session keeps no cookies and ignores the environment), with
a short timeout, without redirects and without any credential.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings

from .. import egress
from ..jira import SERVER_INFO_PATH, session_for
from ..validators import LOCAL_HOSTS

# Short: the admin is waiting for the page, and a Jira that needs longer to say who it is will not do better at
# consent. (connect, read) seconds.
CHECK_TIMEOUT = (3.0, 5.0)
MAX_ANSWER_BYTES = 100_000

# Where a Jira page's path starts, after the base URL: what people paste from the address bar.
_DATA_CENTER_PAGES = re.compile(
    r"/(secure|browse|projects|issues|plugins|servicedesk|rest|login\.jsp|logout|dashboard\.jspa)(/|$|\?|#)",
    re.IGNORECASE,
)
# Jira Cloud's site URL has no path: a page is anything under these (a bare path is refused by the form).
_CLOUD_PAGES = re.compile(r"/(jira|browse|secure|wiki|projects|plugins|servicedesk|rest)/", re.IGNORECASE)


@dataclass(frozen=True)
class SiteCheck:
    """`problem`: what is wrong, in the admin's words (empty when Jira answered); `instead`: what to type."""

    problem: str = ""
    instead: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    def message(self) -> str:
        return self.problem + (f" Type {self.instead} instead." if self.instead else "")


def without_page(url: str, *, cloud: bool = False) -> tuple[str, str]:
    """The base URL of a Jira page's address (…/secure/Dashboard.jspa, …/browse/KEY-1) and the part cut off.

    ("", "") for anything else: the URL is then left as typed.
    """
    url = (url or "").strip()
    parts = urlsplit(url) if "://" in url else None
    if parts is None or not parts.netloc:
        return url, ""
    path_and_more = url[len(f"{parts.scheme}://{parts.netloc}"):]
    match = (_CLOUD_PAGES if cloud else _DATA_CENTER_PAGES).search(path_and_more)
    if match is None:
        return url, ""
    return f"{parts.scheme}://{parts.netloc}{path_and_more[:match.start()]}".rstrip("/"), path_and_more[match.start():]


def check_data_center_base_url(*, base_url: str, ca_certificate: str = "") -> SiteCheck:
    """Ask the Jira at `base_url` who it is, anonymously; say what is wrong and what to type if it is not Jira DC."""
    base_url = base_url.rstrip("/")
    answer = _server_info(base_url, ca_certificate)
    if isinstance(answer, SiteCheck):
        if answer.instead or not answer.problem or not _is_tls_mismatch(answer):
            return answer
        # https against a Jira served over plain http: say so, and what works if http is allowed here.
        http_url = "http" + base_url[len("https"):]
        if _is_jira(_server_info(http_url, ca_certificate)):
            if _http_allowed(http_url):
                return SiteCheck(f"{_origin(base_url)} does not speak https: this Jira is served over plain http.",
                                 http_url)
            return SiteCheck(f"{_origin(base_url)} does not speak https: this Jira is served over plain http, "
                             "and Jira's OAuth 2.0 needs https. Ask for your Jira's https address.")
        return answer
    status, body, location = answer
    if _is_jira_body(body) and 200 <= status < 300:
        if str(body.get("deploymentType", "")).lower() == "cloud":
            return SiteCheck("This is Jira Cloud: choose \"Jira Cloud\" under Authentication and give the site URL "
                             "(https://<your-site>.atlassian.net).")
        return SiteCheck()
    if status in (401, 403) and isinstance(body, dict):
        return SiteCheck()  # a Jira that hides serverInfo from anonymous users: consent will tell
    if 300 <= status < 400:
        return _redirected(base_url, location)
    if status == 404:
        return _not_found(base_url, ca_certificate)
    if status >= 500:
        return SiteCheck(f"The Jira at {base_url} answered HTTP {status}: it may be starting or down. Try again "
                         "in a few minutes; if it persists, check Jira's logs.")
    return SiteCheck(f"{base_url} answers, but not as Jira (HTTP {status} to {SERVER_INFO_PATH}): check the Jira "
                     "base URL — the address of your Jira's dashboard, before /secure/.")


def _server_info(base_url: str, ca_certificate: str):
    """(status, JSON body or None, Location) of Jira's serverInfo, or a SiteCheck saying why there is none."""
    account = _Egress(base_url, ca_certificate)
    try:
        session = session_for(base_url, verify=egress.verify_for(account), proxies=egress.proxies_for(base_url))
    except egress.EgressError as exc:
        return SiteCheck(str(exc))
    try:
        with session.get(base_url + SERVER_INFO_PATH, headers={"Accept": "application/json"}, timeout=CHECK_TIMEOUT,
                         allow_redirects=False, stream=True) as response:
            raw = response.raw.read(MAX_ANSWER_BYTES, decode_content=True)
            status, location = response.status_code, response.headers.get("Location", "")
    except requests.RequestException as exc:
        return _unreachable(base_url, exc)
    try:
        body = json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError:
        body = None
    return status, body, location


@dataclass(frozen=True)
class _Egress:
    """What egress needs of an account, from the form's values (nothing is saved yet)."""

    base_url: str
    jira_ca_certificate: str


def _unreachable(base_url: str, exc: requests.RequestException) -> SiteCheck:
    parts = urlsplit(base_url)
    host, where = parts.hostname or "", _origin(base_url)
    if isinstance(exc, requests.exceptions.ProxyError):
        return SiteCheck("The egress proxy (JIRA_PROXY_URL) could not be reached or refused to connect to "
                         f"{host}: check the proxy, or add {host} to JIRA_NO_PROXY if it is reached directly.")
    if isinstance(exc, requests.exceptions.SSLError):
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return SiteCheck(f"The TLS certificate of {where} is not trusted (or not issued for {host}). If your "
                             "company's CA signed it, paste that CA's certificate into \"Jira CA certificate "
                             "(PEM)\"; otherwise check the host name.")
        return _TLSMismatch(f"The TLS handshake with {where} failed: check https:// against http:// and the port.")
    if isinstance(exc, requests.ConnectTimeout):
        return SiteCheck(f"{where} did not answer within {CHECK_TIMEOUT[0]:g} s: check the host name and the port, "
                         "and that this server may reach it (firewall, JIRA_PROXY_URL).")
    if isinstance(exc, requests.ReadTimeout):
        return SiteCheck(f"{where} accepted the connection but did not answer within {CHECK_TIMEOUT[1]:g} s: check "
                         "that it is Jira and that it is running.")
    if isinstance(exc, requests.ConnectionError) and _name_not_found(exc):
        return SiteCheck(f"The host {host} was not found (its name does not resolve from this server): check the "
                         "spelling of the Jira base URL, e.g. https://jira.example.com/jira.")
    if isinstance(exc, requests.ConnectionError) and "refused" in str(exc).lower():
        return SiteCheck(f"Nothing answers at {where} (connection refused): check the host name and the port.")
    if isinstance(exc, requests.ConnectionError) and parts.scheme == "https":
        # Some servers drop a TLS hello they do not understand instead of answering it.
        return _TLSMismatch(f"{where} closed the connection without answering: check https:// against http:// "
                            "and the port.")
    return SiteCheck(f"{where} could not be reached ({type(exc).__name__}): check the Jira base URL.")


class _TLSMismatch(SiteCheck):
    """A TLS failure that may be https against a plain-http server (tried again over http)."""


def _is_tls_mismatch(check: SiteCheck) -> bool:
    return isinstance(check, _TLSMismatch)


def _name_not_found(exc: Exception) -> bool:
    text = repr(exc)
    return any(word in text for word in ("NameResolutionError", "Name or service not known", "nodename nor servname",
                                         "getaddrinfo failed", "No address associated", "Temporary failure in name"))


def _is_jira_body(body) -> bool:
    return isinstance(body, dict) and isinstance(body.get("versionNumbers"), list) and "baseUrl" in body


def _is_jira(answer) -> bool:
    return isinstance(answer, tuple) and 200 <= answer[0] < 300 and _is_jira_body(answer[1])


def _redirected(base_url: str, location: str) -> SiteCheck:
    target = location.split("?", 1)[0].split("#", 1)[0]
    if target.endswith(SERVER_INFO_PATH):
        instead = target[: -len(SERVER_INFO_PATH)].rstrip("/")
        if instead.startswith(("https://", "http://")) and instead != base_url:
            return SiteCheck(f"{base_url} redirects to {instead}.", instead)
    shown = location[:200] or "another address"
    return SiteCheck(f"{base_url} redirects to {shown} instead of answering as Jira (a login page or another "
                     "site): type the address Jira itself is served at (Administration → System → General "
                     "configuration → Base URL).")


def _not_found(base_url: str, ca_certificate: str) -> SiteCheck:
    parts = urlsplit(base_url)
    origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    candidates = [origin] if parts.path not in ("", "/") else [origin + "/jira"]
    for candidate in candidates:
        answer = _server_info(candidate, ca_certificate)
        if _is_jira(answer):
            context = urlsplit(candidate).path or "none"
            return SiteCheck(f"No Jira at {base_url} (HTTP 404), but Jira answers at {candidate}: its context path "
                             f"is {context}.", candidate)
    return SiteCheck(f"No Jira at {base_url} (HTTP 404 from {SERVER_INFO_PATH}): check the context path — the "
                     "part after the host in the address of Jira's dashboard, before /secure/ (e.g. "
                     "https://jira.example.com/jira, or none).")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _http_allowed(url: str) -> bool:
    return settings.DEBUG or (urlsplit(url).hostname or "") in LOCAL_HOSTS
