"""A Data Center service account: a Jira user no person logs in as, and the OAuth 2.0 credential it gets tokens with.

The credential is an IncomingLink (DOT's Application) of grant type client credentials whose `user` is the
service account's user: DOT then stores that user on every token it issues (see oauth.JiraLikeValidator), so
/rest/api/2/myself answers as the service account and issues it creates are reported by it. Disabling is the
user's `is_active`, as Jira manages service accounts like users; IncomingLink.is_usable turns the credential
down while it is off (401 invalid_client at the token endpoint, 401 on REST for tokens already issued).
"""

from django.conf import settings
from django.db import models

from jira_sandbox.applinks.models import IncomingLink


class ServiceAccount(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="service_account")
    credential = models.OneToOneField(IncomingLink, on_delete=models.CASCADE, related_name="service_account")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user__username"]
        verbose_name = "service account"

    def __str__(self):
        return self.user.get_full_name() or self.user.username

    @property
    def is_active(self):
        return self.user.is_active

    def delete(self, *args, **kwargs):
        """Deleting a service account deletes its user and its credential, as in Jira."""
        user, credential = self.user, self.credential
        result = super().delete(*args, **kwargs)
        credential.delete()
        user.delete()
        return result
