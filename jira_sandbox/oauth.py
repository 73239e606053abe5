"""Where the sandbox bends django-oauth-toolkit towards Jira's observable behaviour.

Only the differences a client can notice live here; the OAuth 2.0 server
itself is DOT and oauthlib, untouched.
"""

import time

from oauth2_provider.models import get_refresh_token_model
from oauth2_provider.oauth2_backends import OAuthLibCore
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors

from . import scopes


class JiraLikeValidator(OAuth2Validator):
    def validate_scopes(self, client_id, requested, client, request, *args, **kwargs):
        """Exactly one scope name, not above the link's Permission.

        Raising (instead of returning False) lets the redirect say why, the way
        Jira's error_description does; oauthlib still adds the state.
        """
        if request.grant_type == "client_credentials":
            self._validate_service_account_scopes(requested, client, request)
            return super().validate_scopes(client_id, requested, client, request, *args, **kwargs)
        if len(requested) != 1:
            raise errors.InvalidScopeError(
                description="Exactly one scope is required: READ, WRITE, ADMIN or SYSTEM_ADMIN.",
                request=request,
            )
        (scope,) = requested
        if scope not in scopes.LEVELS:
            raise errors.InvalidScopeError(description=f"Unknown scope {scope}.", request=request)
        if not scopes.includes(client.permission, scope):
            raise errors.InvalidScopeError(
                description=f"The scope {scope} exceeds the permission {client.permission} of this application link.",
                request=request,
            )
        return super().validate_scopes(client_id, requested, client, request, *args, **kwargs)

    def _validate_service_account_scopes(self, requested, client, request):
        """A service account asks for one or more of READ and WRITE (space-separated), within its own scopes."""
        if not requested:
            raise errors.InvalidScopeError(
                description="A scope is required: READ or WRITE.", request=request
            )
        for scope in requested:
            if scope not in scopes.SERVICE_ACCOUNT_LEVELS:
                raise errors.InvalidScopeError(
                    description=f"The scope {scope} is not available to service accounts: READ or WRITE only.",
                    request=request,
                )
            if not scopes.includes(client.permission, scope):
                raise errors.InvalidScopeError(
                    description=f"The scope {scope} exceeds the scopes of this service account ({client.permission}).",
                    request=request,
                )

    def _create_access_token(self, expires, request, token, source_refresh_token=None):
        """A service account's token acts as the service account (DOT gives client credentials tokens no user)."""
        if request.grant_type == "client_credentials":
            request.user = request.client.user
        return super()._create_access_token(expires, request, token, source_refresh_token)

    def validate_refresh_token(self, refresh_token, client, request, *args, **kwargs):
        """Jira DC refuses a refresh without the link's redirect_uri, with a bare invalid_grant."""
        if not request.redirect_uri or not client.redirect_uri_allowed(request.redirect_uri):
            return False
        return super().validate_refresh_token(refresh_token, client, request, *args, **kwargs)

    def _save_bearer_token(self, token, request, *args, **kwargs):
        """One refresh wins, the others racing it get invalid_grant, as with Jira.

        The refresh token was validated before this transaction began, so a
        concurrent refresh may have rotated it since. DOT would then hand the
        loser the winner's new pair; Jira refuses, and clients that do not
        serialise their refreshes must find that out here. Runs inside DOT's
        transaction, which SQLite starts IMMEDIATE: the re-check is race-free.
        """
        used = getattr(request, "refresh_token_instance", None)
        if used is not None and get_refresh_token_model().objects.filter(pk=used.pk, revoked__isnull=False).exists():
            raise errors.InvalidGrantError(request=request)
        return super()._save_bearer_token(token, request, *args, **kwargs)


class JiraLikeOAuthLibCore(OAuthLibCore):
    def _get_extra_credentials(self, request):
        """Jira's token responses carry the issue time as `created_at` (epoch seconds)."""
        return {"created_at": int(time.time())}
