"""Atlassian Cloud's records: sites, the developer console's app, consents with their tokens, projects and issues.

A consent is Atlassian's token family: one person's Accept on the consent
screen for one app, with the sites they chose. Every access and refresh token
descends from it, the 365-day limit counts from it, and killing the family
(a replaced refresh token reused after the leeway) kills all of them at once.
Tokens are stored as SHA-256 checksums only; the plaintext leaves the server
once, in the token response.
"""

import hashlib

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.db import models
from django.utils import timezone

from jira_sandbox.cloud import identity
from jira_sandbox.issues.models import ISSUE_ID_OFFSET, PROJECT_KEY_VALIDATOR, NumberedIssue


def checksum(token):
    return hashlib.sha256(token.encode()).hexdigest()


class CloudSite(models.Model):
    """One Atlassian site, https://<name>.atlassian.net, known to the API gateway by its cloud id."""

    name = models.CharField(max_length=60, unique=True)
    cloud_id = models.UUIDField(unique=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "site"

    def __str__(self):
        return f"{self.name} ({self.url})"

    @property
    def url(self):
        return f"https://{self.name}.atlassian.net"


class CloudApp(models.Model):
    """An OAuth 2.0 integration registered in Atlassian's developer console: one callback URL, one secret."""

    name = models.CharField(max_length=100)
    client_id = models.CharField("client ID", max_length=100, unique=True)
    client_secret_hash = models.CharField(max_length=128, editable=False)
    callback_url = models.CharField("callback URL", max_length=500)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "developer console app"

    def __str__(self):
        return self.name

    def set_secret(self, secret):
        self.client_secret_hash = make_password(secret)

    def secret_matches(self, secret):
        return bool(secret) and check_password(secret, self.client_secret_hash)


class Consent(models.Model):
    """A token family: what one person allowed one app, on which sites, and since when."""

    class RevokedBecause(models.TextChoices):
        REUSE = "reuse", "A replaced refresh token was reused after the leeway"

    app = models.ForeignKey(CloudApp, on_delete=models.CASCADE, related_name="consents")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cloud_consents")
    sites = models.ManyToManyField(CloudSite, related_name="consents")
    scope = models.CharField(max_length=500, help_text="Granted scopes, space separated.")
    consented_at = models.DateTimeField(
        "first consent",
        default=timezone.now,
        help_text="Refresh tokens of this consent die 365 days after this moment, however often they rotate. "
        "Move it back to age the consent.",
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_because = models.CharField(max_length=16, choices=RevokedBecause.choices, blank=True, editable=False)

    class Meta:
        ordering = ["-consented_at"]
        verbose_name = "consent (token family)"
        verbose_name_plural = "consents (token families)"

    def __str__(self):
        return f"{self.app} for {self.user.username}, {timezone.localtime(self.consented_at):%Y-%m-%d %H:%M}"

    @property
    def scopes(self):
        return self.scope.split()

    def revoke(self, because):
        """Kill the family: every token of it, access and refresh, stops working now."""
        self.revoked_at = timezone.now()
        self.revoked_because = because
        self.save(update_fields=["revoked_at", "revoked_because"])


class CloudServiceAccount(models.Model):
    """A service account an organization admin created in Atlassian Administration, with one OAuth 2.0 credential.

    Its user is its identity on the sites (account ID, reporter of what it creates); `sites` are those it was
    given Jira access on; `scope` the credential's scopes, chosen when it was created. Disabled, its credential
    is refused (401 invalid_client) and its tokens stop working.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="cloud_service_account")
    name = models.CharField(max_length=100)
    sites = models.ManyToManyField(CloudSite, related_name="service_accounts", help_text="Jira access on these sites.")
    scope = models.CharField(max_length=500, help_text="The OAuth 2.0 credential's scopes, space separated.")
    client_id = models.CharField("client ID", max_length=100, unique=True)
    client_secret_hash = models.CharField(max_length=128, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "service account"

    def __str__(self):
        return self.name

    @property
    def scopes(self):
        return self.scope.split()

    @property
    def account_id(self):
        return identity.account_id(self.user)

    @property
    def revoked_at(self):
        """When its tokens stopped working (disabled), as a consent's revocation: the gateway asks one question."""
        return self.disabled_at

    def set_secret(self, secret):
        self.client_secret_hash = make_password(secret)

    def secret_matches(self, secret):
        return bool(secret) and check_password(secret, self.client_secret_hash)


class AuthorizationCode(models.Model):
    consent = models.OneToOneField(Consent, on_delete=models.CASCADE, related_name="code")
    code_checksum = models.CharField(max_length=64, unique=True)
    redirect_uri = models.CharField(max_length=500)
    code_challenge = models.CharField(max_length=128, blank=True)
    expires = models.DateTimeField()
    redeemed_at = models.DateTimeField(null=True, blank=True)


class AccessToken(models.Model):
    """Issued to a person's consent (3LO) or to a service account (client credentials): exactly one of the two."""

    consent = models.ForeignKey(Consent, on_delete=models.CASCADE, related_name="access_tokens", null=True)
    service_account = models.ForeignKey(CloudServiceAccount, on_delete=models.CASCADE, related_name="access_tokens",
                                        null=True)
    token_checksum = models.CharField(max_length=64, unique=True)
    issued = models.DateTimeField(default=timezone.now)
    expires = models.DateTimeField()
    # A service account may ask for fewer scopes than its credential holds; blank: all of its grant's.
    scope = models.CharField(max_length=500, blank=True, default="")

    @property
    def scopes(self):
        return self.scope.split() if self.scope else self.grant.scopes

    @property
    def grant(self):
        """What the token was issued to: both answer .user, .sites, .scopes and .revoked_at."""
        return self.consent if self.consent_id is not None else self.service_account

    def is_live(self, now):
        grant = self.grant
        return grant.revoked_at is None and now < self.expires


class RefreshToken(models.Model):
    consent = models.ForeignKey(Consent, on_delete=models.CASCADE, related_name="refresh_tokens")
    token_checksum = models.CharField(max_length=64, unique=True)
    # The access token issued with it: Atlassian revokes it when this refresh token is replaced.
    companion = models.OneToOneField(AccessToken, on_delete=models.CASCADE, related_name="refresh_token")
    issued = models.DateTimeField(default=timezone.now, help_text="Dies 90 days after this without use.")
    replaced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["issued"]


class CloudProject(models.Model):
    """A Jira project of one site: each site is its own Jira, so keys repeat across sites."""

    site = models.ForeignKey(CloudSite, on_delete=models.CASCADE, related_name="projects")
    key = models.CharField(max_length=10, validators=[PROJECT_KEY_VALIDATOR])
    name = models.CharField(max_length=80)
    issue_counter = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["site", "key"]
        verbose_name = "project"
        constraints = [models.UniqueConstraint(fields=["site", "key"], name="cloud_project_key_unique_per_site")]

    def __str__(self):
        return f"{self.name} ({self.key}) on {self.site.name}"

    @property
    def jira_id(self):
        return str(ISSUE_ID_OFFSET + self.pk)


class CloudIssue(NumberedIssue):
    """An issue created through the gateway, with the token's person as reporter and an ADF description."""

    project = models.ForeignKey(CloudProject, on_delete=models.CASCADE, related_name="issues")
    number = models.PositiveIntegerField(editable=False)
    issue_type = models.CharField(max_length=20, choices=[(name, name) for name in NumberedIssue.TYPES], default="Task")
    summary = models.CharField(max_length=255)
    description = models.JSONField(null=True, blank=True, help_text="Atlassian Document Format, or none.")
    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="cloud_issues")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "issue"
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="cloud_issue_number_per_project")]
