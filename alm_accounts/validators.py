"""Validation and normalisation of what an admin types for an ALM account."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import urlsplit

from cryptography import x509
from django.conf import settings
from django.core.exceptions import ValidationError

from .explain import BIDI_CONTROLS
from .jira import has_dot_segment

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
    if _is_numeric_spelling(host):
        # 2130706433, 0x7f.0.0.1, 127.1 and 0177.0.0.1 all reach 127.0.0.1: checks of the host (which Jira it is,
        # what it may reach) would judge another address than the one connected to.
        raise ValidationError("Write an IP address in the Jira base URL as four decimal numbers (e.g. "
                              "https://10.0.0.5/jira), or use Jira's host name.", code="numeric_host")
    if has_dot_segment(parts.path):
        # "/jira/.." is the host's root, not Jira's context path: tokens would go to another application.
        raise ValidationError("The Jira base URL must not contain '.' or '..' in its path: write Jira's context path "
                              "as it is, e.g. https://jira.example.com/jira", code="dot_segment")
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


def _is_numeric_spelling(host: str) -> bool:
    """A host that the resolver reads as an IPv4 address although it is not written as one (no DNS name ends in a
    number: its last label is a top-level domain), or an IPv4 address written as IPv6 ([::ffff:127.0.0.1] is
    127.0.0.1, which Python's own is_loopback does not see before 3.13)."""
    try:
        address = ipaddress.ip_address(host)
        # written as an address: 10.0.0.5, ::1; but not an IPv4 one in IPv6's clothes
        return isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None
    except ValueError:
        pass
    last = host.rstrip(".").rsplit(".", 1)[-1].lower()
    return last.isdigit() or (last.startswith("0x") and all(ch in "0123456789abcdef" for ch in last[2:]))


# BIDI_CONTROLS (explain): U+202E makes "Payments\u202eskrow" read "Paymentsworks", and the other embeddings,
# overrides, isolates and direction marks reorder text too.
# The zero-width non-joiner and joiner: needed inside words of some scripts (Persian, the Indic scripts) and in emoji
# sequences, so kept between two characters that are not ASCII; anywhere else they only hide.
JOINERS = frozenset("\u200c\u200d")
# Letters that are drawn as nothing (the Hangul fillers): a name made of them looks empty or like another.
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


def _is_invisible(value: str, index: int) -> bool:
    """Whether the character at `index` is drawn as nothing where it stands: a format character (U+200B, U+2060,
    U+FEFF, the soft hyphen, tags...), a Hangul filler, or a joiner that joins nothing of a script needing it."""
    ch = value[index]
    if ch in JOINERS:
        around = value[index - 1:index] + value[index + 1:index + 2]
        return len(around) < 2 or any(c.isascii() or c.isspace() for c in around)
    return unicodedata.category(ch) == "Cf" or ch in BLANK_LETTERS


def validate_display_name(value: str) -> None:
    """A name shown in lists, mails and logs: no line breaks, tabs or other control characters (a forged line in a
    log or a mail), no characters that reverse or reorder the text (a name that reads as another), and no invisible
    characters (account names are unique, but "Pay\u200bments" looks exactly like "Payments")."""
    value = value or ""
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in BIDI_CONTROLS for ch in value) or any(
            _is_invisible(value, index) for index in range(len(value))):
        raise ValidationError("The name must not contain line breaks, tabs or other control characters, nor "
                              "characters that change the direction of the text (such as U+202E), nor invisible "
                              "characters (such as U+200B).", code="control_characters")


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
