"""Creating, disabling and enabling Data Center service accounts: one place for the admin screen and the commands."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from jira_sandbox import scopes
from jira_sandbox.applinks.models import IncomingLink

from .models import ServiceAccount


def create(*, name, username="", scope="WRITE"):
    """A new service account and its credential; returns (service account, plaintext client secret).

    The secret exists in plaintext only now: DOT stores a hash, as Jira shows it once.
    """
    name = name.strip()
    username = (username or slugify(name)).strip()
    if not name or not username:
        raise ValidationError("Give the service account a name.")
    if scope not in scopes.SERVICE_ACCOUNT_LEVELS:
        raise ValidationError(f"A service account's scope is READ or WRITE, not {scope}.")
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        raise ValidationError(f"A Jira user named {username} already exists.")
    with transaction.atomic():
        user = user_model(username=username, first_name=name, is_active=True, is_staff=False)
        user.set_unusable_password()  # no interactive login: it only ever authenticates with its credential
        user.save()
        credential = IncomingLink(
            name=f"Service account {name}",
            user=user,
            permission=scope,
            client_type=IncomingLink.CLIENT_CONFIDENTIAL,
            authorization_grant_type=IncomingLink.GRANT_CLIENT_CREDENTIALS,
        )
        plaintext_secret = credential.client_secret  # hashed by DOT during save()
        credential.save()
        account = ServiceAccount.objects.create(user=user, credential=credential)
    return account, plaintext_secret


def set_enabled(account, enabled):
    """Disable (or enable again) a service account: its credential and every token it holds stop (or start) working."""
    account.user.is_active = enabled
    account.user.save(update_fields=["is_active"])
