"""A person made inactive, or deleted, in Django loses their Jira credentials.

An inactive person's credential is never refreshed or used (services.grants), but its tokens would still be
stored and still valid at Jira: so they are revoked at Jira (best effort, after the commit, with the tokens
held in memory) and wiped here, one audited "Connection ended" event per credential naming the person. A
credential Jira had stopped accepting stays "needs re-authorization" (not "not connected"): made active again,
the person is still refused until they reconnect, rather than acting as the account's connection.

Connected in AlmAccountsConfig.ready() for the configured user model. Not covered: changes that bypass
signals (QuerySet.update(is_active=False), raw SQL); those credentials are still never refreshed or used, and
they are ended the next time the person is saved.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save, pre_delete

DEACTIVATED_ACTOR = "system (person made inactive)"
DELETED_ACTOR = "system (person deleted)"


def person_saved(sender, instance, created=False, update_fields=None, raw=False, **kwargs):
    """After a save that leaves the person inactive: end the credentials that still hold tokens.

    Compared with what is stored, not with the previous is_active: a person already inactive holds no tokens
    (nothing to do, one query), and one whose deactivation bypassed this signal is caught up with here.
    """
    if raw or created or instance.is_active:
        return
    if update_fields is not None and "is_active" not in update_fields:
        return  # e.g. the last_login update at login
    from .services import end_credentials_of_person

    end_credentials_of_person(user=instance, actor=DEACTIVATED_ACTOR,
                              because=f"{instance.get_username()} was made inactive")


def person_deleted(sender, instance, **kwargs):
    """Before the person's rows go (their credentials cascade): record and revoke, after the delete commits."""
    from .services import end_credentials_of_person

    end_credentials_of_person(user=instance, actor=DELETED_ACTOR, because=f"{instance.get_username()} was deleted",
                              wipe=False)


def connect() -> None:
    user_model = get_user_model()
    post_save.connect(person_saved, sender=user_model, dispatch_uid="alm_accounts.person_saved")
    pre_delete.connect(person_deleted, sender=user_model, dispatch_uid="alm_accounts.person_deleted")
