"""The incoming application link, as a swapped-in DOT Application model.

Swapping (rather than a proxy plus a side table) keeps the link's Permission
on the very row DOT loads for every request, so the scopes backend and the
redirect check read it without another query.
"""

from django.db import models
from oauth2_provider.models import AbstractApplication


class IncomingLink(AbstractApplication):
    class Permission(models.TextChoices):
        READ = "READ", "Read"
        WRITE = "WRITE", "Write"
        ADMIN = "ADMIN", "Admin"
        SYSTEM_ADMIN = "SYSTEM_ADMIN", "System admin"

    # Jira's "External application, Incoming" link is always a confidential
    # client using the authorization code grant, so these are not asked for.
    client_type = models.CharField(
        max_length=32,
        choices=AbstractApplication.CLIENT_TYPES,
        default=AbstractApplication.CLIENT_CONFIDENTIAL,
    )
    authorization_grant_type = models.CharField(
        max_length=44,
        choices=AbstractApplication.GRANT_TYPES,
        default=AbstractApplication.GRANT_AUTHORIZATION_CODE,
    )
    permission = models.CharField(
        "permission",
        max_length=16,
        choices=Permission.choices,
        default=Permission.READ,
        help_text="The highest scope a client may request through this link.",
    )

    class Meta:
        verbose_name = "application link"
        verbose_name_plural = "application links"

    @property
    def redirect_url(self):
        return self.redirect_uris.strip()

    def redirect_uri_allowed(self, uri):
        """Plain string comparison, as Jira does.

        DOT's own check follows RFC 8252 and accepts any port on a registered
        http://127.0.0.1 URL; Jira does not, and clients must find that out here.
        """
        return uri == self.redirect_url

    def is_usable(self, request):
        """A service account's credential (client credentials) works only while the service account is enabled.

        DOT asks this when it loads the client at the token endpoint (a disabled one: 401 invalid_client)
        and again for every Bearer token (a token issued before it was disabled: 401).
        """
        if self.authorization_grant_type != self.GRANT_CLIENT_CREDENTIALS:
            return True
        return self.user_id is not None and self.user.is_active
