"""Validation and normalisation of what an admin types for an ALM account."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from cryptography import x509
from django.conf import settings
from django.core.exceptions import ValidationError

MAX_BASE_URL_LENGTH = 500
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+$")
_CALLBACK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# A CA bundle of a few certificates is a few kB; certifi's whole bundle is about 300 kB.
MAX_CA_CERTIFICATE_BYTES = 64 * 1024
_PEM_BEGIN_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
_PEM_CERTIFICATE_RE = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL)


def normalize_base_url(value: str) -> str:
    """Trim whitespace and trailing slashes; keep the context path (e.g. /jira)."""
    return (value or "").strip().rstrip("/")


def validate_base_url(value: str) -> None:
    value = value or ""
    if len(value) > MAX_BASE_URL_LENGTH:
        raise ValidationError(f"The Jira base URL is too long (at most {MAX_BASE_URL_LENGTH} characters).")
    if value != value.strip() or any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ValidationError("The Jira base URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValidationError("Enter the Jira base URL as https://host[:port][/context-path].") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        # http:// is accepted in development (DEBUG) and for a Jira on this machine: say so there.
        also = " (or http:// in development)" if settings.DEBUG else ""
        raise ValidationError(f"Enter the Jira base URL starting with https://{also}, e.g. "
                              "https://jira.example.com/jira")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValidationError("Do not put a user name or password in the Jira base URL.")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ValidationError("The Jira base URL must not contain a query (?…) or a fragment (#…).")
    host = parts.hostname or ""
    if not _is_valid_host(host):
        raise ValidationError("The host name in the Jira base URL is not valid.")
    if port == 0:
        raise ValidationError("The port in the Jira base URL is not valid.")
    if parts.scheme == "http" and not (settings.DEBUG or host in LOCAL_HOSTS):
        raise ValidationError("Jira requires https:// for OAuth 2.0; use the https address of your Jira.")


def _is_valid_host(host: str) -> bool:
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return bool(_HOST_RE.match(host)) and all(0 < len(label) <= 63 for label in host.split("."))


def validate_callback_id(value: str) -> None:
    if not _CALLBACK_ID_RE.match(value or ""):
        raise ValidationError("This callback URL is not valid; reload the page to get a new one.")


def is_well_formed_callback_id(value: str) -> bool:
    return bool(_CALLBACK_ID_RE.match(value or ""))


def validate_ca_certificate(value: str) -> None:
    """The "Jira CA certificate (PEM)": one or more CA certificates, nothing else (above all no private key).

    Accepted: certificates marked as a CA (basicConstraints CA:TRUE), and self-signed certificates (a Jira
    whose own certificate is self-signed, e.g. made with keytool, is trusted by pasting that certificate).
    Text around the PEM blocks (openssl's "subject=" lines) is ignored; only the certificates are used.
    """
    value = value or ""
    if len(value.encode("utf-8")) > MAX_CA_CERTIFICATE_BYTES:
        raise ValidationError(
            f"This is larger than {MAX_CA_CERTIFICATE_BYTES // 1024} kB: paste only the certificate of the CA that "
            "signed Jira's certificate (and its intermediates), not a whole CA bundle."
        )
    labels = _PEM_BEGIN_RE.findall(value)
    if any("PRIVATE KEY" in label for label in labels):
        raise ValidationError("This looks like a private key: paste the CA's certificate only.")
    if not labels:
        raise ValidationError(
            "Paste the CA certificate in PEM form, from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE----- "
            "included."
        )
    others = sorted({label for label in labels if label != "CERTIFICATE"})
    if others:
        raise ValidationError(
            f"Only certificates belong here (-----BEGIN CERTIFICATE-----), not a {others[0].lower()}."
        )
    blocks = _PEM_CERTIFICATE_RE.findall(value)
    if len(blocks) != len(labels):
        raise ValidationError(
            "A certificate is cut off: copy it from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE----- "
            "included."
        )
    for number, block in enumerate(blocks, start=1):
        which = f"Certificate {number}" if len(blocks) > 1 else "The certificate"
        try:
            certificate = x509.load_pem_x509_certificate(block.encode("ascii", errors="replace"))
        except ValueError:
            raise ValidationError(f"{which} cannot be read as an X.509 certificate; copy it again.") from None
        if not _is_ca_or_self_signed(certificate):
            raise ValidationError(
                f"{which} ({_name(certificate.subject)}) is not a CA certificate but a server's: paste the "
                f"certificate of the CA that signed it ({_name(certificate.issuer)})."
            )


def _is_ca_or_self_signed(certificate: x509.Certificate) -> bool:
    try:
        if certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return True
    except x509.ExtensionNotFound:
        pass
    except ValueError:  # a malformed extension: judge by the names alone
        pass
    return certificate.issuer == certificate.subject


def _name(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()[:200] or "no name"
    except ValueError:
        return "a name that cannot be read"


MAX_NOTIFY_ADDRESSES = 20


def email_addresses(value: str) -> list[str]:
    """The addresses of a Notify field: separated by commas, semicolons, spaces or new lines."""
    return [part for part in re.split(r"[\s,;]+", value or "") if part]


def validate_notify(value: str) -> None:
    from django.core.validators import validate_email

    addresses = email_addresses(value)
    if len(addresses) > MAX_NOTIFY_ADDRESSES:
        raise ValidationError(f"At most {MAX_NOTIFY_ADDRESSES} addresses, please (a mailing list works well).")
    bad = []
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            bad.append(address)
    if bad:
        raise ValidationError("Not an e-mail address: %(bad)s", params={"bad": ", ".join(bad[:5])})
