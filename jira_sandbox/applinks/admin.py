"""Jira's "Application links" screen: create an incoming link, then copy its credentials.

DOT hashes the client secret when the link is saved, so the plaintext exists
only during the request that creates the link. It is parked in the session and
shown once on the credentials page, which is where Jira shows it too.
"""

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from .forms import IncomingLinkForm
from .models import IncomingLink

_SECRET_SESSION_KEY = "applinks_new_secret_{pk}"

# DOT registered its generic Application admin for the swapped model.
admin.site.unregister(IncomingLink)


@admin.register(IncomingLink)
class IncomingLinkAdmin(admin.ModelAdmin):
    form = IncomingLinkForm
    list_display = ("name", "redirect_url", "permission", "client_id", "created")
    search_fields = ("name", "client_id")
    view_on_site = False

    def get_queryset(self, request):
        # Service accounts' credentials are links too (client credentials), listed under Service accounts.
        return super().get_queryset(request).exclude(authorization_grant_type=IncomingLink.GRANT_CLIENT_CREDENTIALS)

    def get_fields(self, request, obj=None):
        fields = ["name", "redirect_uris", "permission"]
        return fields if obj is None else fields + ["client_id"]

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("client_id",)

    def add_view(self, request, form_url="", extra_context=None):
        extra_context = {"title": "Create link", **(extra_context or {})}
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.user = request.user
            plaintext_secret = obj.client_secret  # hashed by DOT during save()
        super().save_model(request, obj, form, change)
        if not change:
            request.session[_SECRET_SESSION_KEY.format(pk=obj.pk)] = plaintext_secret

    def response_add(self, request, obj, post_url_continue=None):
        return HttpResponseRedirect(reverse("admin:applinks_incominglink_credentials", args=[obj.pk]))

    def get_urls(self):
        credentials = path(
            "<int:pk>/credentials/",
            self.admin_site.admin_view(self.credentials_view),
            name="applinks_incominglink_credentials",
        )
        return [credentials, *super().get_urls()]

    def credentials_view(self, request, pk):
        link = get_object_or_404(IncomingLink, pk=pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Credentials for {link.name}",
            "link": link,
            "client_secret": request.session.pop(_SECRET_SESSION_KEY.format(pk=pk), None),
        }
        return TemplateResponse(request, "admin/applinks/incominglink/credentials.html", context)
