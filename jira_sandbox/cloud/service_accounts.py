"""Atlassian Cloud service accounts: created with one OAuth 2.0 credential, disabled, and their token requests.

What Atlassian documents: an organization admin creates the service account (Atlassian Administration →
Directory → Service accounts), gives it app access on sites, and creates an OAuth 2.0 credential with chosen
scopes, which yields a Client ID and Secret shown once; POST https://auth.atlassian.com/oauth/token with them
gives a 60-minute access token; REST goes through api.atlassian.com/ex/jira/{cloudId}/... The account gets a
generated account ID and an email at serviceaccount.atlassian.com.

Where Atlassian is silent, the sandbox chooses (docs/sandbox.md says so too):
- the body is JSON, as for 3LO: {"grant_type": "client_credentials", "client_id", "client_secret"}, with an
  optional "scope" (space-separated) and "audience" (if given, api.atlassian.com);
- without "scope" the token holds all the credential's scopes; a scope it does not hold is 403 invalid_scope;
  offline_access is ignored (there is never a refresh token);
- an unknown Client ID or a wrong secret: 401 access_denied "Unauthorized", as for an app (Auth0);
  a disabled service account: 401 invalid_client.
"""

import datetime
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from . import scopes
from .models import AccessToken, CloudServiceAccount, CloudSite, checksum

DEFAULT_SCOPES = (scopes.READ_WORK, scopes.WRITE_WORK, scopes.READ_USER)
DEFAULT_SITES = ("kendis-sandbox",)
EMAIL_DOMAIN = "serviceaccount.atlassian.com"


def create(*, name, scope_list=DEFAULT_SCOPES, site_names=None):
    """A new service account with its OAuth 2.0 credential; returns (service account, plaintext client secret)."""
    name = name.strip()
    if not name:
        raise ValidationError("Give the service account a name.")
    scope_list = list(dict.fromkeys(scope_list))
    not_offered = [scope for scope in scope_list if scope not in scopes.SERVICE_ACCOUNT_SCOPES]
    if not scope_list or not_offered:
        raise ValidationError(
            f"Choose the credential's scopes among {' '.join(scopes.SERVICE_ACCOUNT_SCOPES)}"
            + (f" (not {' '.join(not_offered)})." if not_offered else ".")
        )
    site_names = list(site_names or DEFAULT_SITES)
    sites = list(CloudSite.objects.filter(name__in=site_names))
    unknown = sorted(set(site_names) - {site.name for site in sites})
    if unknown:
        raise ValidationError(f"No site named {', '.join(unknown)}: the sites are "
                              f"{', '.join(CloudSite.objects.values_list('name', flat=True))}.")
    username = f"{slugify(name) or 'service-account'}-{secrets.token_hex(3)}"
    secret = "ATOA" + secrets.token_urlsafe(48)
    with transaction.atomic():
        user = get_user_model()(username=username, first_name=name, email=f"{username}@{EMAIL_DOMAIN}")
        user.set_unusable_password()  # no login to any screen: only its credential
        user.save()
        account = CloudServiceAccount(user=user, name=name, scope=" ".join(scope_list),
                                      client_id=secrets.token_urlsafe(24))
        account.set_secret(secret)
        account.save()
        account.sites.set(sites)
    return account, secret


def set_enabled(account, enabled):
    """Disabled, its credential is refused and its tokens stop working at once; enabled, it may ask again."""
    account.disabled_at = None if enabled else timezone.now()
    account.save(update_fields=["disabled_at"])


def issue_token(body, *, error, new_access_token, audience):
    """Answer a client_credentials request: the token response, or raise `error(status, error, description)`."""
    account = CloudServiceAccount.objects.filter(client_id=str(body.get("client_id") or "")).first()
    if account is None or not account.secret_matches(str(body.get("client_secret") or "")):
        raise error(401, "access_denied", "Unauthorized")
    if account.disabled_at is not None:
        raise error(401, "invalid_client", "The service account of this credential is disabled.")
    if "audience" in body and body["audience"] != audience:
        raise error(403, "access_denied", f"Service not found: {body['audience']}")
    requested = body.get("scope")
    if requested is not None and not isinstance(requested, str):
        raise error(400, "invalid_request", "scope must be a space-separated string.")
    wanted = [scope for scope in (requested or "").split() if scope != scopes.OFFLINE_ACCESS] or account.scopes
    missing = [scope for scope in wanted if scope not in account.scopes]
    if missing:
        raise error(403, "invalid_scope", f"The credential does not hold the scope {' '.join(missing)}.")
    granted = " ".join(wanted)
    access_token = new_access_token(subject=account.account_id, client_id=account.client_id, scope=granted)
    lifetime = settings.SANDBOX_CLOUD_ACCESS_TOKEN_SECONDS
    now = timezone.now()
    AccessToken.objects.create(
        service_account=account,
        scope=granted,
        token_checksum=checksum(access_token),
        issued=now,
        expires=now + datetime.timedelta(seconds=lifetime),
    )
    return {"access_token": access_token, "expires_in": lifetime, "token_type": "Bearer", "scope": granted}
