"""What every use case shares: the error shown to admins, the audit trail, the Jira client of an account."""

from __future__ import annotations

import contextlib
import hashlib
import logging

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from .. import egress
from ..conf import app_settings
from ..fields import UnreadableSecret
from ..jira import JiraClient
from ..kinds import kind_of
from ..models import ALMAccount, AuthEvent, Grant
from ..providers import provider_for

log = logging.getLogger("alm_accounts.services")

Status = ALMAccount.Status
Kind = AuthEvent.Kind


class ServiceError(Exception):
    """A failure to show to the admin as it is (already in their words)."""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def record_event(grant: Grant | None, *, actor: str, kind: str, ok: bool, message: str = "",
                 account_name: str = "", grant_owner: str = "") -> AuthEvent:
    """An audit event about `grant` (an account's own connection or a person's credential), or about an
    account that is gone (grant None, named by account_name)."""
    account = grant.grant_account if grant is not None else None
    return AuthEvent.objects.create(
        account=account,
        credential=kind_of(grant).credential(grant) if grant is not None else None,
        grant_owner=(grant_owner or (grant.grant_owner if grant is not None else ""))[:150],
        account_name=(account.name if account is not None else account_name)[:200],
        actor=(actor or "system")[:150],
        kind=kind,
        outcome=AuthEvent.Outcome.OK if ok else AuthEvent.Outcome.FAILED,
        message=message,
    )


def actor_of(user) -> str:
    return user.get_username() if user is not None and user.is_authenticated else "anonymous"


def client_for(account: ALMAccount) -> JiraClient:
    """The provider's client with the account's credentials (Cloud: the deployment's app unless the account has its
    own), sending the Client Secret only to where it was entered for."""
    provider = provider_for(account)
    client_id, secret = provider.credentials(account)
    if isinstance(secret, UnreadableSecret):
        raise ServiceError(
            "The stored Client Secret cannot be decrypted with the configured FIELD_ENCRYPTION_KEY. Restore the "
            "key it was encrypted with, or paste the Client Secret from Jira again."
        )
    secret = secret or ""
    bound_to = account.client_secret_base_url
    if secret and bound_to and bound_to != account.base_url and provider.secret_goes_to_base_url(account):
        # Never send a secret to a host it was not entered for (an edited base URL must not harvest it). The
        # admin records where each secret was entered; a row made elsewhere without it (a script) is not bound.
        raise ServiceError(
            "The Jira base URL changed since the Client Secret was entered: paste the Client Secret shown by "
            "Jira's incoming application link again and save."
        )
    try:
        return provider.client(account, client_id=client_id, secret=secret,
                               timeout=(app_settings.JIRA_CONNECT_TIMEOUT, app_settings.JIRA_READ_TIMEOUT))
    except egress.EgressError as exc:
        raise ServiceError(str(exc)) from None


def mark(grant: Grant | int, **fields) -> None:
    """Update a grant's fields without reading it (an int is an ALM account's id)."""
    model, pk = (ALMAccount, grant) if isinstance(grant, int) else (type(grant), grant.pk)
    model.objects.filter(pk=pk).update(updated_at=timezone.now(), **fields)


class NestedTransactionError(RuntimeError):
    """A use case that commits Jira's rotated tokens was called inside a caller's transaction."""


@contextlib.contextmanager
def own_transaction(what: str):
    """A transaction of its own, never a savepoint of a caller's (atomic(durable=True)).

    Refreshes, code exchanges and disconnects hold a row lock while Jira
    answers and store tokens Jira has just rotated: inside a caller's
    transaction the lock would be held until the caller commits, and the
    caller's rollback would drop the new tokens (and with them the grant).
    """
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(transaction.atomic(durable=True))
    except RuntimeError as exc:
        raise NestedTransactionError(
            f"{what} must not run inside a database transaction: it commits the tokens Jira has just rotated "
            "at once. Call it outside transaction.atomic()."
        ) from exc
    with stack:
        if connection.vendor == "postgresql" and not _session_protected():
            # The row lock is held while Jira answers: a database policy must not end the transaction
            # midway (the rotated pair would be lost), and waiting for a lock has a bound of its own.
            _protect(local=True)
        yield


def _lock_timeout() -> str:
    return f"{int((app_settings.JIRA_REFRESH_DEADLINE + 10) * 1000)}ms"


def _protect(*, local: bool) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('idle_in_transaction_session_timeout', '0', %s), set_config('lock_timeout', %s, %s)",
            [local, _lock_timeout(), local],
        )


def _session_protected() -> bool:
    raw = connection.connection
    protected, timeout = getattr(connection, "refresher_session", (None, None))
    return raw is not None and protected is raw and timeout == _lock_timeout()


def protect_session() -> None:
    """For a connection that runs nothing but refreshes (refresh_tokens' threads): what own_transaction sets for
    each transaction, set once for the whole database session, so that each refresh has one statement (and one
    round trip) less. A new connection (after a lost one) is protected per transaction again until this is
    called again. Best effort: if it fails, own_transaction still protects each transaction."""
    if connection.vendor != "postgresql" or connection.in_atomic_block or _session_protected():
        return
    try:
        connection.ensure_connection()
        _protect(local=False)
    except DatabaseError:
        return
    # The driver's connection itself, not its id: a new connection could reuse the id of a closed one.
    connection.refresher_session = (connection.connection, _lock_timeout())
