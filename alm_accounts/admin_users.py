"""The Users screens, told what a person needs for My ALM Credentials.

A person connects their own Jira account under My ALM Credentials as soon as they may sign in here, which is
Django's "Staff status"; no other permission is needed. Django's add form has no such box (the admin had to
save, then find it on a second screen), and its help text speaks of "this admin site" only. Here the add form
offers Staff status, and both forms say what it gives. Imported at the end of admin.py.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm

STAFF_HELP = ("Lets this person sign in here, and that is all My ALM Credentials needs: they can then connect "
              "their own Jira account. It gives no other permission; those are chosen under Permissions.")

User = get_user_model()


class PersonCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        fields = (*AdminUserCreationForm.Meta.fields, "is_staff")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["is_staff"].help_text = STAFF_HELP


class PeopleAdmin(UserAdmin):
    add_form = PersonCreationForm
    add_fieldsets = (
        *UserAdmin.add_fieldsets,
        ("Access", {"classes": ("wide",), "fields": ("is_staff",)}),
    )

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if "is_staff" in form.base_fields:
            form.base_fields["is_staff"].help_text = STAFF_HELP
        return form


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, PeopleAdmin)
