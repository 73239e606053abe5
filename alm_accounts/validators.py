"""Validation and normalisation of what an admin types for an ALM account."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

MAX_BASE_URL_LENGTH = 500
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+$")
_CALLBACK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


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
        raise ValidationError("Enter the Jira base URL starting with https://, e.g. https://jira.example.com/jira")
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
