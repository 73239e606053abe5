"""Jira's redirect back to us after consent (the callback URL)."""

import functools

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from . import services


class CallbackQuery:
    """Jira's query parameters, read-only, with a repr that hides them (tracebacks and error pages print reprs)."""

    __slots__ = ("_query",)

    def __init__(self, query: QueryDict):
        self._query = query

    def getlist(self, name: str) -> list[str]:
        return self._query.getlist(name)

    def __repr__(self):
        return f"<CallbackQuery: {', '.join(sorted(self._query)) or 'no parameters'} (values hidden)>"


def _callback_request(view):
    """GET only; the code and state are taken out of the request before anything else sees it.

    The view gets the query as an argument. The request everything else sees
    (the login redirect, templates, Django's request logging) carries none of
    it. The server's access log is written from the raw request line: for
    runserver, settings.LOGGING redacts `code` and `state` there; a production
    server's or proxy's access log must not record query strings of this path.
    """

    @functools.wraps(view)
    def wrapper(request, **kwargs):
        query = CallbackQuery(request.GET.copy())
        request.GET = QueryDict()
        request.META["QUERY_STRING"] = ""
        if request.method != "GET":
            response = render(request, "alm_accounts/callback_error.html", {
                "message": "This address only receives Jira's redirect after access was allowed. Open the ALM "
                           "account and click Get Auth Token.",
            }, status=405)
            response["Allow"] = "GET"
            return response
        return view(request, query, **kwargs)

    return wrapper


@never_cache
@_callback_request
@staff_member_required
def oauth_callback(request, query, callback_id):
    """Complete the authorization started by Get Auth Token and go back to the account page (Jira Data Center:
    one callback URL per account).

    Errors land on the account page as messages (or on a plain error page
    when no account can be named); the URL the browser ends on never carries
    the code or state.
    """
    return _complete(request, query, functools.partial(services.complete_authorization, callback_id=callback_id))


@never_cache
@_callback_request
@staff_member_required
def atlassian_callback(request, query):
    """The same for Jira Cloud: this deployment's one callback URL, registered once in Atlassian's developer
    console; the state names the account and the grant."""
    return _complete(request, query, services.complete_cloud_authorization)


def _complete(request, query, complete):
    user = request.user
    may_connect_account = user.has_perm("alm_accounts.change_almaccount")
    if not may_connect_account and not services.started_for_own_credential(query=query, user=user):
        # Refused before anything is looked at or used up (a person's own connection needs no permission).
        return render(request, "alm_accounts/callback_error.html",
                      {"message": "You are not allowed to connect ALM accounts."}, status=403)
    try:
        outcome = complete(query=query, user=user, session=request.session, may_connect_account=may_connect_account)
    except services.CallbackForbidden as exc:
        return render(request, "alm_accounts/callback_error.html", {"message": str(exc)}, status=403)
    except services.CallbackRejected as exc:
        if exc.account is None:
            return render(request, "alm_accounts/callback_error.html", {"message": str(exc)}, status=400)
        messages.error(request, str(exc))
        return HttpResponseRedirect(_back_to(user, exc.account, for_own_credential=None))
    level = (messages.WARNING if outcome.warning else messages.SUCCESS) if outcome.ok else messages.ERROR
    messages.add_message(request, level, outcome.message)
    return HttpResponseRedirect(_back_to(user, outcome.account, for_own_credential=outcome.for_own_credential))


def _back_to(user, account, *, for_own_credential: bool | None) -> str:
    """The account page for an account's connection; My ALM Credentials for a person's own (or when the person
    may not see the account page)."""
    if for_own_credential or not user.has_perm("alm_accounts.view_almaccount"):
        return reverse("my_alm_credentials")
    return account.get_admin_url()
