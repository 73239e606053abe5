"""api.atlassian.com played under /cloud-api/: accessible-resources, and Jira through ex/jira/{cloudid}.

The gateway answers for itself before Jira sees a request, in its own error
shape {"code", "message"}: 401 for a missing, unknown, expired or revoked
token, 401 for a cloud id the token's consent does not cover (the gateway does
not tell such a site from one that does not exist), and 401 "Unauthorized;
scope does not match" when the token lacks the operation's scope (Data Center
says 403 there; clients that refresh on any 401 will refresh once and still fail).
"""

import uuid
from functools import wraps

from django.http import JsonResponse
from django.views.decorators.http import require_GET

from . import identity, scopes, tokens

CLOUD_JIRA_VERSION = "1001.0.0-SNAPSHOT"
SITE_AVATAR = "https://site-admin-avatar-cdn.prod.public.atl-paas.net/avatars/240/rocket.png"


def gateway_error(message="Unauthorized"):
    response = JsonResponse({"code": 401, "message": message}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="api.atlassian.com"'
    return response


def _bearer(request):
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def authorized(view=None, *, scope=None):
    """Let a request in with a live token (and `scope`); a view under ex/jira/<cloud_id> also gets `site`.

    Sets request.cloud_grant (a person's consent, or a service account: both have .sites and .scopes) and
    request.cloud_user.
    """
    if view is None:
        return lambda view: authorized(view, scope=scope)

    @wraps(view)
    def wrapper(request, *args, cloud_id=None, **kwargs):
        access_token = tokens.live_access_token(_bearer(request))
        if access_token is None:
            return gateway_error()
        grant = access_token.grant
        if cloud_id is not None:
            wanted = _uuid_or_none(cloud_id)
            site = grant.sites.filter(cloud_id=wanted).first() if wanted else None
            if site is None:
                return gateway_error()
            kwargs["site"] = site
        if scope is not None and scope not in access_token.scopes:
            return gateway_error("Unauthorized; scope does not match")
        request.cloud_grant = grant
        request.cloud_scopes = access_token.scopes
        request.cloud_user = grant.user
        return view(request, *args, **kwargs)

    return wrapper


def _uuid_or_none(value):
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


@require_GET
@authorized
def accessible_resources(request):
    """The sites the person chose on the consent screen (a service account: those it has Jira access on), each
    with the scopes granted there."""
    granted = scopes.site_scopes(request.cloud_scopes)
    return JsonResponse(
        [
            {"id": str(site.cloud_id), "url": site.url, "name": site.name, "scopes": granted, "avatarUrl": SITE_AVATAR}
            for site in request.cloud_grant.sites.order_by("name")
        ],
        safe=False,
    )


@require_GET
@authorized(scope=scopes.READ_USER)
def myself(request, site, version=3):
    return JsonResponse({**identity.user_json(site, request.cloud_user), "locale": "en_US"})


@require_GET
@authorized(scope=scopes.READ_USER)
def server_info(request, site, version=3):
    return JsonResponse(
        {
            "baseUrl": site.url,
            "version": CLOUD_JIRA_VERSION,
            "versionNumbers": [1001, 0, 0],
            "deploymentType": "Cloud",
            "buildNumber": 100288,
            "serverTitle": "Jira",
        }
    )
