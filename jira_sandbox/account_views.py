"""Logging in and out of the sandbox as one of its Jira users, the way a person switches identity in Jira."""

from urllib.parse import urlencode

from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from . import users


class SandboxLoginView(LoginView):
    """Django's login form, with the sandbox's users and passwords listed beside it (dev only)."""

    template_name = "sandbox/login.html"

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "sandbox_users": users.SANDBOX_USERS}


def logout_view(request):
    """Log out, then back to the login page, which returns to `next` (e.g. the consent page) afterwards.

    GET as well as POST, like Jira's own Log out link: in this dev-only stand-in
    the cost of a forged logout is a second login, and a plain link is what lets
    a person switch Jira user in the middle of an authorization.
    """
    logout(request)
    next_url = request.GET.get("next") or request.POST.get("next") or ""
    login_url = reverse("login")
    if next_url and url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        login_url += "?" + urlencode({"next": next_url})
    return redirect(login_url)


@login_required
def home(request):
    """Administrators go on to the administration; anyone else sees who they are logged in as."""
    if request.user.is_staff:
        return redirect("admin:index")
    return render(request, "sandbox/home.html", {"display_name": users.display_name(request.user)})
