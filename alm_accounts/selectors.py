"""The "which grants need attention" queries, in one place (the rule itself is models.is_due)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import ALMAccount


def refreshable_accounts() -> QuerySet[ALMAccount]:
    """Accounts holding a grant that is still worth keeping alive."""
    return ALMAccount.objects.filter(refresh_token__isnull=False).exclude(
        status=ALMAccount.Status.NEEDS_REAUTHORIZATION
    )


def due_accounts(*, within: timedelta) -> QuerySet[ALMAccount]:
    deadline = timezone.now() + within
    return refreshable_accounts().filter(Q(token_expires_at__isnull=True) | Q(token_expires_at__lte=deadline))
