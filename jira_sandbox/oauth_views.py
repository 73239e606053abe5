"""The OAuth 2.0 endpoints at Jira's paths: DOT's views with Jira's quirks on top."""

import time

from django.conf import settings
from django.http import HttpResponse
from oauth2_provider.views import AuthorizationView, TokenView

from . import stats


class ConsentView(AuthorizationView):
    """Jira's consent screen: Allow or Deny, for the logged-in user."""

    template_name = "sandbox/consent.html"


class JiraTokenView(TokenView):
    """DOT's token endpoint, plus Jira's answer to JSON bodies and optional latency."""

    def post(self, request, *args, **kwargs):
        if settings.SANDBOX_TOKEN_LATENCY_MS:
            time.sleep(settings.SANDBOX_TOKEN_LATENCY_MS / 1000)
        if request.content_type == "application/json":
            # Jira reads form parameters only and fails hard on anything else.
            response = HttpResponse(
                "<html><body><h1>HTTP Status 500 - Internal Server Error</h1></body></html>",
                status=500,
                content_type="text/html",
            )
        else:
            response = super().post(request, *args, **kwargs)
        grant_type = request.POST.get("grant_type")
        stats.record_token_request(grant_type, response.status_code)
        if grant_type == "client_credentials":
            stats.record_client_credentials("dc", request.POST.get("client_id"), response.status_code)
        return response
