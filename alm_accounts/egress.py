"""How calls leave for Jira: which CAs are trusted and which proxy is used, per ALM account.

The Jira client (jira.py) knows nothing of Django; this module turns the
settings (JIRA_CA_BUNDLE, JIRA_PROXY_URL, JIRA_NO_PROXY) and an account's own
"Jira CA certificate (PEM)" into the `verify` / `proxies` arguments of
`JiraClient`:

    JiraClient(base_url, client_id, secret, timeout=..., **egress.client_options(account))

Certificate verification is never switched off. An account's CA is added to
the default trust (certifi's bundle, or JIRA_CA_BUNDLE instead of it) for that
account's calls only: requests needs a file, so the combined bundle is written
once to a private cache directory under the temporary directory, named after
the SHA-256 of its contents, and reused. jira.session_for pools one session
per (origin, CA file, proxy), so one account's CA never applies to another
account on the same host.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

import certifi
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .conf import app_settings


class EgressError(Exception):
    """The account's outgoing configuration cannot be used; the message is for an administrator."""


def client_options(account) -> dict:
    """The keyword arguments for `JiraClient(...)` that say how to reach this account's Jira."""
    return {"verify": verify_for(account), "proxies": proxies_for(account.base_url)}


def default_verify() -> str | bool:
    """True (certifi) or the JIRA_CA_BUNDLE path: the trust of every call that is not to an account's own Jira Data
    Center host (Atlassian's authorization server and API gateway above all)."""
    default = settings_ca_bundle()
    if default and not os.path.isfile(default):
        # Checked at start too; a bundle removed since would make requests raise a bare OSError mid-call.
        raise EgressError(f"The CA bundle JIRA_CA_BUNDLE ({default}) no longer exists; restore it or unset it.")
    return default or True


def verify_for(account) -> str | bool:
    """True (certifi), the JIRA_CA_BUNDLE path, or a cached bundle file: default trust + the account's CA.

    For a Jira Data Center account's calls to its base URL only: the CA was pasted for that host. A Jira Cloud
    account's calls go to Atlassian's hosts, where the deployment's ATLASSIAN_CLIENT_SECRET travels: they get
    default_verify(), whatever certificate the row still holds.
    """
    default = default_verify()
    pem = (getattr(account, "jira_ca_certificate", "") or "").strip()
    if not pem:
        return default
    try:
        account_certificates = normalized_certificates(pem)
    except ValueError:
        # Saved through the admin it was validated; anything else (a shell, a bulk update) is refused here
        # rather than silently calling Jira with less trust than the administrator configured.
        raise EgressError(
            "The account's Jira CA certificate (PEM) cannot be read: paste the CA certificate again."
        ) from None
    try:
        default_pem = _read_bundle(default if isinstance(default, str) else certifi.where())
        return str(_cached_bundle(default_pem.rstrip(b"\n") + b"\n" + account_certificates))
    except OSError as exc:
        raise EgressError(
            f"The CA bundle for this account's calls to Jira could not be prepared ({exc.strerror or exc}); "
            f"check that {tempfile.gettempdir()} is writable."
        ) from None


def proxies_for(base_url: str) -> dict[str, str] | None:
    """JIRA_PROXY_URL for both schemes, unless the Jira host is in JIRA_NO_PROXY."""
    proxy = app_settings.JIRA_PROXY_URL
    if not proxy:
        return None
    host = (urlsplit(base_url).hostname or "").lower()
    if bypasses_proxy(host, app_settings.JIRA_NO_PROXY):
        return None
    return {"http": proxy, "https": proxy}


def bypasses_proxy(host: str, no_proxy: list[str]) -> bool:
    """An entry matches the host itself and its subdomains (`example.com` and `.example.com` alike)."""
    host = host.lower().rstrip(".")
    for entry in no_proxy:
        entry = entry.strip().lower().lstrip(".").rstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def settings_ca_bundle() -> str:
    return app_settings.JIRA_CA_BUNDLE


def normalized_certificates(pem: str) -> bytes:
    """The certificates of a PEM text, re-encoded (no comments, no stray text). ValueError when there are none."""
    certificates = x509.load_pem_x509_certificates(pem.encode("utf-8"))
    return b"".join(certificate.public_bytes(Encoding.PEM) for certificate in certificates)


@functools.lru_cache(maxsize=8)
def _read_bundle_cached(path: str, mtime_ns: int, size: int) -> bytes:
    return Path(path).read_bytes()


def _read_bundle(path: str) -> bytes:
    info = os.stat(path)
    return _read_bundle_cached(path, info.st_mtime_ns, info.st_size)


_write_lock = threading.Lock()


def _cached_bundle(contents: bytes) -> Path:
    """A file holding `contents`, written once (atomically) and reused; rewritten if a /tmp cleaner removed it."""
    path = cache_dir() / f"{hashlib.sha256(contents).hexdigest()}.pem"
    if path.is_file():
        return path
    with _write_lock:
        if not path.is_file():
            # Write beside it, then rename: a reader never sees a half-written bundle.
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".partial-", suffix=".pem")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(contents)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
    return path


def cache_dir() -> Path:
    """A directory only this user can write to (0700): nobody else may plant a CA we would then trust."""
    path = Path(tempfile.gettempdir()) / f"kendis-jira-ca-{os.getuid()}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise EgressError(
            f"The directory {path} is not a private directory of this user; remove it so that it can be "
            "created again."
        )
    return path
