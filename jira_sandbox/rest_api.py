"""The two Jira REST resources a client needs to identify the account and server."""

from functools import wraps

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.http import require_GET
from oauth2_provider.oauth2_backends import get_oauthlib_core


def bearer_required(view):
    """Let a request in only with a live access token, else 401 like Jira.

    Not DOT's `protected_resource`: that decorator builds its own server with the
    default validator class (ignoring OAUTH2_VALIDATOR_CLASS) and answers 403.
    """

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        valid, oauth_request = get_oauthlib_core().verify_request(request, scopes=[])
        if not valid:
            response = JsonResponse(
                {
                    "errorMessages": ["You are not authenticated. Authentication required to perform this operation."],
                    "errors": {},
                },
                status=401,
            )
            response["WWW-Authenticate"] = 'Bearer realm="jira", error="invalid_token"'
            return response
        request.oauth_user = oauth_request.user
        return view(request, *args, **kwargs)

    return wrapper


def _base_url(request):
    return request.build_absolute_uri("/").rstrip("/")


@require_GET
@bearer_required
def myself(request):
    user = request.oauth_user
    return JsonResponse(
        {
            "self": f"{_base_url(request)}/rest/api/2/user?username={user.username}",
            # Jira 8+ gives new users an opaque key, unrelated to the username.
            "key": f"JIRAUSER{10000 + user.pk}",
            "name": user.username,
            "emailAddress": user.email,
            "displayName": user.get_full_name() or user.username,
            "active": user.is_active,
            "deleted": False,
            "timeZone": settings.TIME_ZONE,
            "locale": "en_US",
        }
    )


@require_GET
@bearer_required
def server_info(request):
    version = settings.SANDBOX_JIRA_VERSION
    return JsonResponse(
        {
            "baseUrl": _base_url(request),
            "version": version,
            "versionNumbers": [int(part) for part in version.split(".")],
            "deploymentType": "Server",
            "serverTitle": settings.SANDBOX_SERVER_TITLE,
        }
    )
