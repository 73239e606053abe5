"""The Jira REST resources that identify the account and server; issues live in issues/rest.py."""

from functools import wraps

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.http import require_GET
from oauth2_provider.oauth2_backends import get_oauthlib_core

from . import scopes, users


def error_response(status, *, messages=(), errors=None):
    """Jira's error body: general messages, and messages per field."""
    return JsonResponse({"errorMessages": list(messages), "errors": errors or {}}, status=status)


def bearer_required(view=None, *, scope="READ"):
    """Let a request in only with a live access token, else 401 like Jira; 403 when its scope is too low.

    Every token holds at least READ, so `scope` matters from WRITE up. The exact
    text of Jira's 403 for a too-narrow scope is not confirmed; its status is.
    Not DOT's `protected_resource`: that decorator builds its own server with the
    default validator class (ignoring OAUTH2_VALIDATOR_CLASS) and answers 403.
    """
    if view is None:
        return lambda view: bearer_required(view, scope=scope)

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        valid, oauth_request = get_oauthlib_core().verify_request(request, scopes=[])
        if not valid:
            response = error_response(
                401, messages=["You are not authenticated. Authentication required to perform this operation."]
            )
            response["WWW-Authenticate"] = 'Bearer realm="jira", error="invalid_token"'
            return response
        granted = scopes.highest(oauth_request.access_token.scope)
        if not scopes.includes(granted, scope):
            return error_response(
                403,
                messages=[f"This access token has the scope {granted}; this operation needs {scope} or higher."],
            )
        request.oauth_user = oauth_request.user
        return view(request, *args, **kwargs)

    return wrapper


def base_url(request):
    return request.build_absolute_uri("/").rstrip("/")


@require_GET
@bearer_required
def myself(request):
    """The token's user: whose grant this is, with the display name Jira shows for them."""
    return JsonResponse(
        {
            **users.user_json(request, request.oauth_user),
            "deleted": False,
            "timeZone": settings.TIME_ZONE,
            "locale": "en_US",
        }
    )


@require_GET
def server_info(request):
    """Who this Jira is. Like Jira DC, it answers anonymously (clients check a base URL with it before sending
    anyone to consent); a request that does carry a Bearer token still gets 401 when the token is not valid."""
    if "Authorization" in request.headers:
        return bearer_required(_server_info)(request)
    return _server_info(request)


def _server_info(request):
    version = settings.SANDBOX_JIRA_VERSION
    return JsonResponse(
        {
            "baseUrl": base_url(request),
            "version": version,
            "versionNumbers": [int(part) for part in version.split(".")],
            "deploymentType": "Server",
            "serverTitle": settings.SANDBOX_SERVER_TITLE,
        }
    )
