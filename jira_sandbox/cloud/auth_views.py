"""auth.atlassian.com played under /cloud-auth/: the consent screen and the JSON token endpoint.

Errors follow Atlassian's authorization server: a request that cannot be sent
back safely (unknown client, a redirect_uri that is not the app's callback
URL) is answered with a page; anything wrong after that goes back to the
callback with error, error_description and state.
"""

import json
import time
import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from jira_sandbox import stats, users

from . import identity, scopes, tokens
from .models import CloudApp, CloudSite

AUDIENCE = "api.atlassian.com"


def _back_to_client(redirect_uri, state, **params):
    if state is not None:
        params["state"] = state
    separator = "&" if "?" in redirect_uri else "?"
    return HttpResponseRedirect(f"{redirect_uri}{separator}{urlencode(params)}")


def _problem(params):
    """What is wrong with a request whose client and redirect_uri are fine: (error, description), or None."""
    if params.get("audience") != AUDIENCE:
        return "access_denied", f"Service not found: {params.get('audience', '')}"
    if params.get("response_type") != "code":
        return "unsupported_response_type", f"Unsupported response type: {params.get('response_type', '')}"
    requested = params.get("scope", "").split()
    if not requested:
        return "invalid_scope", "At least one scope is required."
    unknown = scopes.unknown(requested)
    if unknown:
        return "invalid_scope", f"Unknown scope: {' '.join(unknown)}"
    if params.get("code_challenge") and params.get("code_challenge_method") != "S256":
        return "invalid_request", "code_challenge_method must be S256."
    return None


@login_required
@require_http_methods(["GET", "POST"])
def authorize(request):
    """GET: the consent screen. POST (from it): Accept with the chosen sites, or Cancel."""
    params = request.GET
    app = CloudApp.objects.filter(client_id=params.get("client_id", "")).first()
    if app is None:
        return _error_page(request, "invalid_client", "Unknown client_id: this app is not registered.")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri != app.callback_url:
        return _error_page(
            request, "invalid_request", "The redirect_uri is not the callback URL registered for this app."
        )
    state = params.get("state")
    problem = _problem(params)
    if problem:
        return _back_to_client(redirect_uri, state, error=problem[0], error_description=problem[1])

    requested = params["scope"].split()
    sites = CloudSite.objects.all()  # every sandbox user may use every site
    chosen = [str(site.cloud_id) for site in sites]
    if request.method == "POST":
        if "accept" not in request.POST:
            return _back_to_client(
                redirect_uri, state, error="access_denied", error_description="User did not authorize the request"
            )
        chosen = request.POST.getlist("sites")
        chosen_sites = list(sites.filter(cloud_id__in=[c for c in chosen if _is_uuid(c)]))
        if chosen_sites:
            code = tokens.create_consent(
                app=app,
                user=request.user,
                sites=chosen_sites,
                scope_list=requested,
                redirect_uri=redirect_uri,
                code_challenge=params.get("code_challenge"),
            )
            return _back_to_client(redirect_uri, state, code=code)
    context = {
        "app": app,
        "scopes": [(scope, scopes.DESCRIPTIONS[scope]) for scope in requested],
        "sites": [(site, str(site.cloud_id) in chosen) for site in sites],
        "no_site_chosen": request.method == "POST",
        "display_name": users.display_name(request.user),
        "account_id": identity.account_id(request.user),
    }
    return render(request, "sandbox/cloud_consent.html", context)


def _is_uuid(value):
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _error_page(request, error, description):
    return render(request, "sandbox/cloud_error.html", {"error": error, "description": description}, status=400)


@csrf_exempt  # a machine-to-machine endpoint authenticated by the client secret, never by cookies
@require_POST
def token(request):
    """POST /cloud-auth/oauth/token: a JSON body only, as Atlassian documents it."""
    if settings.SANDBOX_TOKEN_LATENCY_MS:
        time.sleep(settings.SANDBOX_TOKEN_LATENCY_MS / 1000)
    body = None
    if request.content_type != "application/json":
        status, answer = (
            415,
            {
                "error": "invalid_request",
                "error_description": "Send the token request as JSON (Content-Type: application/json).",
            },
        )
    else:
        try:
            body = json.loads(request.body or b"null")
        except (UnicodeDecodeError, ValueError):
            body = None
        if isinstance(body, dict):
            status, answer = tokens.token_response(body)
        else:
            status, answer = 400, {"error": "invalid_request", "error_description": "The body is not a JSON object."}
    grant_type = body.get("grant_type") if isinstance(body, dict) else None
    stats.record_cloud_token_request(grant_type if isinstance(grant_type, str) else None, status)
    if grant_type == "client_credentials":
        stats.record_client_credentials("cloud", str(body.get("client_id") or ""), status)
    response = JsonResponse(answer, status=status)
    response["Cache-Control"] = "no-store"
    return response
