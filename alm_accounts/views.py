"""Jira's redirect back to us after consent (the callback URL)."""

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import services


@never_cache
@require_GET
@staff_member_required
def oauth_callback(request, callback_id):
    """Complete the authorization started by Get Auth Token and go back to the account page.

    Errors land on the account page as messages (or on a plain error page
    when no account can be named); the URL the browser ends on never carries
    the code or state.
    """
    user = request.user
    if not user.has_perm("alm_accounts.change_almaccount"):
        return render(request, "alm_accounts/callback_error.html",
                      {"message": "You are not allowed to connect ALM accounts."}, status=403)
    try:
        outcome = services.complete_authorization(
            callback_id=callback_id, query=request.GET, user=user, session=request.session
        )
    except services.CallbackRejected as exc:
        if exc.account is None:
            return render(request, "alm_accounts/callback_error.html", {"message": str(exc)}, status=400)
        messages.error(request, str(exc))
        return HttpResponseRedirect(exc.account.get_admin_url())
    messages.add_message(request, messages.SUCCESS if outcome.ok else messages.ERROR, outcome.message)
    return HttpResponseRedirect(outcome.account.get_admin_url())
