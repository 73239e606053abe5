"""Atlassian's token endpoint rules: codes, rotating refresh tokens, the reuse leeway, the token family.

Why not django-oauth-toolkit here, when the Data Center side is DOT: DOT has
no token family (nothing ties a refresh token to the consent it descends from,
so reuse cannot kill every sibling), no absolute lifetime counted from the
first consent, and its refresh grace period hands back the *same* new pair
where Atlassian issues another one. Its errors are RFC 6749's (400 for
invalid_grant) where Atlassian, built on Auth0, answers 403, and 401
access_denied for a bad client. Bending DOT that far would leave little of it,
so the rules below are written out plainly over the models in models.py.

The rules, as Atlassian documents them:
- access tokens live SANDBOX_CLOUD_ACCESS_TOKEN_SECONDS (1 hour);
- a refresh token is returned only when offline_access was granted, and is
  replaced by every refresh (rotation);
- a replaced refresh token still works within the reuse leeway (10 minutes)
  after it was first replaced, each time for a fresh pair; reused after it,
  the whole family is revoked;
- the replaced token's access token also lives on for the leeway only;
- a refresh token dies 90 days after it was issued (without use) and every
  one of a family dies 365 days after the first consent, whatever happens;
- a dead refresh token answers 403 invalid_grant "Unknown or invalid refresh token.".

Each function runs in one transaction, which SQLite starts IMMEDIATE (see
settings.py): concurrent refreshes of one token are serialised, and inside
the leeway both get a pair, as with Atlassian.
"""

import base64
import datetime
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jira_sandbox import stats

from . import scopes, service_accounts
from .models import AccessToken, AuthorizationCode, CloudApp, Consent, RefreshToken, checksum

INVALID_REFRESH_TOKEN = "Unknown or invalid refresh token."


@dataclass
class TokenError(Exception):
    """An answer of the token endpoint other than tokens: HTTP status, OAuth error, description."""

    status: int
    error: str
    description: str

    def body(self):
        return {"error": self.error, "error_description": self.description}


def _seconds(name):
    return datetime.timedelta(seconds=getattr(settings, name))


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _new_access_token(*, subject, client_id, scope):
    """JWT-shaped and well over 1 kB, like Atlassian's: a client storing it in 255 characters finds out here."""
    header = _b64(json.dumps({"kid": "auth.atlassian.com/sandbox", "typ": "JWT", "alg": "RS256"}).encode())
    claims = {
        "jti": str(uuid.uuid4()),
        "sub": subject,
        "client_id": client_id,
        "scope": scope,
        "padding": secrets.token_urlsafe(600),
    }
    return f"{header}.{_b64(json.dumps(claims).encode())}.{secrets.token_urlsafe(256)}"


def _issue_pair(consent, now):
    """A new access token and, when offline_access was granted, its refresh token; the token response."""
    access_token = _new_access_token(subject=str(consent.user_id), client_id=consent.app.client_id,
                                     scope=consent.scope)
    lifetime = settings.SANDBOX_CLOUD_ACCESS_TOKEN_SECONDS
    access = AccessToken.objects.create(
        consent=consent,
        token_checksum=checksum(access_token),
        issued=now,
        expires=now + datetime.timedelta(seconds=lifetime),
    )
    answer = {"access_token": access_token, "expires_in": lifetime, "token_type": "Bearer", "scope": consent.scope}
    if scopes.OFFLINE_ACCESS in consent.scopes:
        refresh_token = secrets.token_urlsafe(384)
        RefreshToken.objects.create(
            consent=consent, token_checksum=checksum(refresh_token), companion=access, issued=now
        )
        answer["refresh_token"] = refresh_token
    return answer


def create_consent(*, app, user, sites, scope_list, redirect_uri, code_challenge):
    """The person pressed Accept: a new token family, and the code that starts it. Returns the code."""
    code = secrets.token_urlsafe(32)
    with transaction.atomic():
        consent = Consent.objects.create(app=app, user=user, scope=" ".join(scope_list))
        consent.sites.set(sites)
        AuthorizationCode.objects.create(
            consent=consent,
            code_checksum=checksum(code),
            redirect_uri=redirect_uri,
            code_challenge=code_challenge or "",
            expires=timezone.now() + _seconds("SANDBOX_CLOUD_AUTHORIZATION_CODE_SECONDS"),
        )
    return code


def authenticate_client(body):
    """The developer console app named by client_id, if client_secret is its secret; else Auth0's 401."""
    app = CloudApp.objects.filter(client_id=str(body.get("client_id") or "")).first()
    if app is None or not app.secret_matches(str(body.get("client_secret") or "")):
        raise TokenError(401, "access_denied", "Unauthorized")
    return app


def _required(body, name):
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise TokenError(400, "invalid_request", f"Missing required parameter: {name}")
    return value


def _pkce_matches(challenge, verifier):
    if not verifier:
        return False
    return _b64(hashlib.sha256(verifier.encode()).digest()) == challenge


def exchange_code(app, body):
    code = _required(body, "code")
    redirect_uri = _required(body, "redirect_uri")
    now = timezone.now()
    with transaction.atomic():
        row = (
            AuthorizationCode.objects.select_related("consent__app")
            .filter(code_checksum=checksum(code), consent__app=app)
            .first()
        )
        if row is None or row.redeemed_at is not None or row.expires <= now:
            raise TokenError(403, "invalid_grant", "Invalid authorization code")
        if redirect_uri != row.redirect_uri:
            raise TokenError(403, "invalid_grant", "Redirect URI is wrong or does not match the authorization request.")
        if row.code_challenge and not _pkce_matches(row.code_challenge, body.get("code_verifier")):
            raise TokenError(403, "invalid_grant", "Failed to verify code verifier")
        row.redeemed_at = now
        row.save(update_fields=["redeemed_at"])
        return _issue_pair(row.consent, now)


def _refresh_token_dead(token, now):
    consent = token.consent
    return (
        consent.revoked_at is not None
        or now >= token.issued + _seconds("SANDBOX_CLOUD_REFRESH_IDLE_SECONDS")
        or now >= consent.consented_at + _seconds("SANDBOX_CLOUD_REFRESH_ABSOLUTE_SECONDS")
    )


def refresh(app, body):
    presented = _required(body, "refresh_token")
    now = timezone.now()
    leeway = _seconds("SANDBOX_CLOUD_REUSE_LEEWAY_SECONDS")
    with transaction.atomic():
        token = (
            RefreshToken.objects.select_related("consent__app", "companion")
            .filter(token_checksum=checksum(presented), consent__app=app)
            .first()
        )
        if token is None or _refresh_token_dead(token, now):
            raise TokenError(403, "invalid_grant", INVALID_REFRESH_TOKEN)
        if token.replaced_at is None:
            token.replaced_at = now
            token.save(update_fields=["replaced_at"])
            companion = token.companion
            companion.expires = min(companion.expires, now + leeway)
            companion.save(update_fields=["expires"])
            return _issue_pair(token.consent, now)
        if now - token.replaced_at <= leeway:
            stats.record_cloud_reuse_within_leeway()
            return _issue_pair(token.consent, now)
        # Not raised in here: the revocation must be committed, not rolled back with the refusal.
        token.consent.revoke(Consent.RevokedBecause.REUSE)
    stats.record_cloud_family_killed()
    raise TokenError(403, "invalid_grant", INVALID_REFRESH_TOKEN)


GRANTS = {"authorization_code": exchange_code, "refresh_token": refresh}


AUDIENCE = "api.atlassian.com"


def client_credentials(body):
    """A service account's OAuth 2.0 credential asks for a token: no consent, no refresh token.

    The rules are in service_accounts.py; they get this module's error and token shape passed in.
    """
    return service_accounts.issue_token(body, error=TokenError, new_access_token=_new_access_token,
                                        audience=AUDIENCE)


def token_response(body):
    """The JSON answer to one token request body: (status, JSON)."""
    grant_type = body.get("grant_type")
    grant = GRANTS.get(grant_type) if isinstance(grant_type, str) else None
    try:
        if grant_type == "client_credentials":
            return 200, client_credentials(body)
        if grant is None:
            raise TokenError(403, "unsupported_grant_type", f"Unsupported grant type: {grant_type}")
        return 200, grant(authenticate_client(body), body)
    except TokenError as refusal:
        return refusal.status, refusal.body()


def live_access_token(presented):
    """The AccessToken row of a Bearer token the gateway should let through, else None."""
    if not presented:
        return None
    token = (AccessToken.objects.select_related("consent__user", "service_account__user")
             .filter(token_checksum=checksum(presented)).first())
    return token if token is not None and token.is_live(timezone.now()) else None
