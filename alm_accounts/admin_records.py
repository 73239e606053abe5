"""What the read-only record lists (audit trail, alerts) share: no add, edit or delete; whose grant; which account."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList


class RecordChangeList(ChangeList):
    """The date drill-down (?created_at__year=...) with a year, month or day no date can have (99999999999, 9999
    then "next year") is a bad filter like any other: Django shows the list unfiltered with its "?e=1" notice
    instead of failing with OverflowError (a 500)."""

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as exc:
            raise IncorrectLookupParameters(exc) from exc


class RecordAdmin(admin.ModelAdmin):
    """A list of records written by the services: they are read here, never added, edited or deleted.

    The models have `account` (None once the account is deleted), `account_name` and `grant_owner`.
    """

    list_select_related = ["account"]

    def get_changelist(self, request, **kwargs):
        return RecordChangeList

    @admin.display(description="Account", ordering="account_name")
    def account_display(self, obj):
        if obj.account is not None:
            return obj.account.name
        return f"{obj.account_name} (deleted)" if obj.account_name else "—"

    @admin.display(description="Whose grant", ordering="grant_owner")
    def grant_owner_display(self, obj):
        return obj.grant_owner or "The account"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
