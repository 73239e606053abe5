"""The ALM account form, in the order of the setup walk-through.

The Client Secret is write-only: the form never renders a stored value, and
leaving it blank on an existing account keeps the stored secret. A changed
Jira base URL needs the Client Secret pasted again (a stored secret is sent
only to the Jira it was entered for); on a connected account the form says
before saving that a new base URL or Client ID ends the connection
(services.save_account ends it).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from . import messages
from .models import CLOUD_AUTHENTICATIONS, CLOUD_SCOPES, ALMAccount, new_callback_id
from .providers import DATA_CENTER_SERVICE_SCOPES, SERVICE_ACCOUNT_AUTHENTICATIONS, cloud_scope
from .services import service_accounts
from .services.site_check import check_data_center_base_url, without_page
from .validators import is_well_formed_callback_id, normalize_base_url, validate_base_url, validate_display_name
from .widgets import CACertificateInput, CallbackURLWidget

PENDING_CALLBACK_SESSION_KEY = "alm_accounts.pending_callback_id"
# The button that saves and sends the admin to Jira's consent page (change_form.html).
GET_AUTH_TOKEN = "_get_auth_token"

# Shown under the field on a connected account, and by connection_notice.js as soon as the field is edited.
ENDS_CONNECTION = {
    "base_url": (
        "Changing it ends the connection: its tokens are deleted here (and revoked at the current Jira where it "
        "allows), the Client Secret of the new Jira's incoming application link must be pasted, and you click Get "
        "Auth Token again.",
        "You changed the Jira base URL: saving ends the connection to Jira. Its tokens will be deleted here; paste "
        "the Client Secret shown by the new Jira's incoming application link, save, then click Get Auth Token.",
    ),
    "client_id": (
        "Changing it ends the connection: its tokens are deleted here (and revoked at Jira where it allows), and "
        "you click Get Auth Token again.",
        "You changed the Client ID: saving ends the connection to Jira. Its tokens will be deleted here; click Get "
        "Auth Token after saving.",
    ),
}


def _valid_base_url(value: str) -> bool:
    """The model's own validation says what is wrong with a malformed URL (it runs after clean())."""
    try:
        validate_base_url(value)
    except ValidationError:
        return False
    return True


def secret_field(label: str, help_text) -> forms.CharField:
    """A secret typed by the admin: never rendered back into the page (blank keeps the stored one), nor offered
    by the browser's password manager as a login."""
    return forms.CharField(
        label=label, required=False, strip=True, max_length=1000, help_text=help_text,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


class ALMAccountForm(forms.ModelForm):
    client_secret = secret_field("Client Secret", format_html(
        '<span data-cloud-text="{}">{}</span>',
        "Jira Cloud: your own Atlassian app's Secret, with its Client ID (blank for this deployment's app). "
        "Stored encrypted and never shown again.",
        "Shown by Jira's incoming application link with the Client ID. Stored encrypted and never shown again.",
    ))
    service_client_secret = secret_field(
        "Service account Client Secret",
        "Service accounts only: shown once when the service account's OAuth 2.0 credential was created. Stored "
        "encrypted and never shown again; Save checks it at once by getting a token.")
    # Carries the account's callback id. On the add form it is chosen before the
    # first save, so that the Callback URL the admin copies into Jira is the one
    # the account keeps. (Named after what the admin sees: the URL.)
    callback_url = forms.CharField(
        label="Callback URL",
        required=False,
        widget=CallbackURLWidget,
        # Both providers' words; provider_fields.js shows the chosen one's (data-cloud-text).
        help_text=format_html(
            '<span data-cloud-text="{}">{}</span>',
            "Jira Cloud: this deployment's one callback URL, registered once in the Atlassian app. It never changes.",
            "Paste it into the Redirect URL of Jira's incoming application link. It never changes.",
        ),
    )

    cloud_scopes = forms.MultipleChoiceField(
        label="Scopes",
        required=False,
        choices=[(scope, scope) for scope in CLOUD_SCOPES if scope != "offline_access"],
        widget=forms.CheckboxSelectMultiple,
        help_text="Jira Cloud only: what the product may do, as enabled on the app's Permissions page in Atlassian's "
        "developer console (Jira API, classic scopes). For a consent (3LO), offline_access is always asked for: "
        "without it Atlassian issues no refresh token; a service account has no refresh token and gets its "
        "credential's scopes.",
    )

    class Meta:
        model = ALMAccount
        fields = ["alm_type", "name", "authentication", "base_url", "cloud_scopes", "jira_ca_certificate", "client_id",
                  "client_secret", "service_client_id", "service_client_secret", "scope", "unconnected_users",
                  "notify"]
        widgets = {
            "base_url": forms.URLInput(attrs={"placeholder": "https://jira.example.com/jira", "size": 60}),
            "jira_ca_certificate": CACertificateInput(attrs={"rows": 6, "cols": 64, "spellcheck": "false",
                                                         "placeholder": "-----BEGIN CERTIFICATE-----"}),
            "client_id": forms.TextInput(attrs={"size": 40, "autocomplete": "off", "spellcheck": "false"}),
            "service_client_id": forms.TextInput(attrs={"size": 40, "autocomplete": "off", "spellcheck": "false"}),
            "name": forms.TextInput(attrs={"placeholder": "Jira - Core Banking", "size": 40}),
            "notify": forms.Textarea(attrs={"rows": 2, "cols": 64, "placeholder": "jira-admins@example.com"}),
        }

    class Media:
        js = ["alm_accounts/connection_notice.js"]
        css = {"all": ["alm_accounts/alm_accounts.css"]}

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request
        self.client_secret_entered = False
        self.service_secret_entered = False
        # What Save's check of a service account found (services.service_accounts.check): stored with the account.
        self.service_check = None
        # Said after saving (admin.save_model): what the form changed in what was typed, e.g. a pasted page address.
        self.notes: list[str] = []
        if "unconnected_users" in self.fields:
            # A browser always sends the select's value; a script's post without it keeps the stored policy.
            self.fields["unconnected_users"].required = False
        if "client_id" in self.fields:
            self.fields["client_id"].help_text = format_html(
                '<span data-cloud-text="{}">{}</span>.',
                "Jira Cloud: blank for this deployment's Atlassian app, or your own app's Client ID (developer "
                "console → your app → Settings)",
                "Shown by Jira after you save the incoming application link",
            )
        if "cloud_scopes" in self.fields:
            # Stored space-separated; the boxes need a list. The form's initial (the instance's values, on an
            # existing account) wins over the field's, so both are set: else no box comes back ticked.
            self.fields["cloud_scopes"].initial = self.instance.cloud_scopes.split()
            if "cloud_scopes" in self.initial and isinstance(self.initial["cloud_scopes"], str):
                self.initial["cloud_scopes"] = self.initial["cloud_scopes"].split()
        field = self.fields["callback_url"]
        if self.instance.pk is None:
            field.initial = self.pending_callback_id()
        else:
            field.initial = self.instance.callback_id
            field.disabled = True
            if self.instance.client_secret is not None:
                self.fields["client_secret"].help_text = (
                    "A Client Secret is stored (encrypted). Leave blank to keep it, or paste a new one to replace it. "
                    "After a change of the Jira base URL, paste the new Jira's Client Secret."
                )
            if self.instance.refresh_token is not None or self.instance.access_token is not None:
                if "authentication" in self.fields:
                    self.fields["authentication"].help_text = (
                        "Changing the authentication ends the connection: its tokens are deleted here, and you click "
                        "Get Auth Token again.")
                for name, (help_text, notice) in ENDS_CONNECTION.items():
                    if name in self.fields:
                        field = self.fields[name]
                        field.help_text = f"{str(field.help_text).rstrip('. ')}. {help_text}".lstrip(". ")
                        field.widget.attrs["data-ends-connection"] = notice

    def pending_callback_id(self) -> str:
        """Stable across reloads of the add form in one session, until an account is saved with it."""
        session = getattr(self.request, "session", None)
        if session is None:
            return new_callback_id()
        value = session.get(PENDING_CALLBACK_SESSION_KEY)
        if not is_well_formed_callback_id(value) or ALMAccount.objects.filter(callback_id=value).exists():
            value = new_callback_id()
            session[PENDING_CALLBACK_SESSION_KEY] = value
        return value

    def clean_unconnected_users(self):
        return self.cleaned_data.get("unconnected_users") or self.instance.unconnected_users

    def clean_name(self):
        name = self.cleaned_data.get("name", "")
        validate_display_name(name)
        return name

    def clean_base_url(self):
        typed = normalize_base_url(self.cleaned_data.get("base_url", ""))
        cloud = self.data.get(self.add_prefix("authentication")) in CLOUD_AUTHENTICATIONS
        base_url, page = without_page(typed, cloud=cloud)
        if page:
            # An address copied from the browser while on a Jira page: its base URL is what comes before the page.
            self.notes.append(f"The Jira base URL was saved as {base_url}: the page part of the pasted address "
                              f"({page[:80]}) is not part of it.")
        return normalize_base_url(base_url)

    def is_cloud(self) -> bool:
        return self.cleaned_data.get("authentication") in CLOUD_AUTHENTICATIONS

    def is_service_account(self) -> bool:
        return self.cleaned_data.get("authentication") in SERVICE_ACCOUNT_AUTHENTICATIONS

    def clean_cloud_scopes(self):
        # Stored space-separated, in Atlassian's order, with offline_access (a refresh token needs it).
        chosen = self.cleaned_data.get("cloud_scopes") or []
        if not chosen and not self.is_cloud():
            return self.instance.cloud_scopes  # hidden for Data Center: kept as it is
        if self.is_service_account():
            # Client credentials issue no refresh token: no offline_access for a service account's credential.
            return " ".join(scope for scope in cloud_scope(" ".join(chosen)).split() if scope != "offline_access")
        return cloud_scope(" ".join(chosen))

    def _secret(self, name: str, *, spaces: str):
        """A secret field: blank keeps what is stored (None on a new account); one with spaces is refused in the
        words `spaces`. Returns (the value, whether one was entered)."""
        value = self.cleaned_data.get(name) or ""
        if not value:
            return getattr(self.instance, name), False
        if any(ch.isspace() for ch in value):
            raise ValidationError(spaces)
        return value, True

    def clean_service_client_secret(self):
        value, self.service_secret_entered = self._secret(
            "service_client_secret", spaces="The service account's Client Secret must not contain spaces; paste it "
            "again.")
        return value

    def clean_client_secret(self):
        value, self.client_secret_entered = self._secret(
            "client_secret", spaces="The Client Secret must not contain spaces; paste it again from Jira.")
        return value

    def clean(self):
        cleaned = super().clean()
        base_url = cleaned.get("base_url")
        if (
            self.instance.pk is not None
            and cleaned.get("authentication") is not None
            # The same kind of application (a Data Center link, an Atlassian app) whether or not the account's own
            # connection is a service account's: its secret stays.
            and (cleaned.get("authentication") in CLOUD_AUTHENTICATIONS) != self.instance.is_cloud
            and self.instance.client_secret is not None
            and not self.client_secret_entered
            and cleaned.get("client_id")
            and "client_secret" not in self.errors
        ):
            # A secret entered for one kind of application (a Data Center link, an Atlassian app) is never sent to
            # the other's host: services.save_account forgets it when the authentication changes.
            self.add_error("client_secret", ValidationError(
                "The authentication changed: paste the Client Secret that goes with this Client ID (or, for Jira "
                "Cloud with this deployment's Atlassian app, clear the Client ID). The stored Client Secret belongs "
                "to the other kind of application and is never sent to this one.",
                code="secret_for_another_provider",
            ))
        if self.is_cloud():
            self._clean_cloud(cleaned)
            self._clean_service_account(cleaned)
            return cleaned
        if (
            self.instance.pk is not None
            and base_url
            and base_url != normalize_base_url(self.instance.base_url)
            and not self.client_secret_entered
            and self.instance.client_secret is not None
            and "client_secret" not in self.errors
        ):
            self.add_error("client_secret", ValidationError(
                "The Jira base URL changed: paste the Client Secret shown by the incoming application link of the "
                "Jira at the new base URL. The stored Client Secret is sent only to the Jira it was entered for.",
                code="secret_for_another_jira",
            ))
        if base_url and "base_url" not in self.errors and GET_AUTH_TOKEN in self.data and _valid_base_url(base_url):
            # Before the admin is sent there: a wrong base URL would end on the browser's or Jira's error page.
            check = check_data_center_base_url(base_url=base_url,
                                               ca_certificate=cleaned.get("jira_ca_certificate") or "")
            if not check.ok:
                self.add_error("base_url", ValidationError(check.message(), code="not_jira"))
        self._clean_service_account(cleaned)
        return cleaned

    def _clean_service_account(self, cleaned):
        """A service account: its Client ID and Secret (the stored secret only where it was entered for), a scope a
        Data Center service account can have; then, with no error left, Save's check: a token and /myself (Cloud:
        the site too). Nothing is stored when any of it fails."""
        if not self.is_service_account():
            return
        if not cleaned.get("service_client_id"):
            self.add_error("service_client_id", ValidationError(messages.SERVICE_CLIENT_ID_MISSING,
                                                                code="service_client_id_missing"))
        secret = cleaned.get("service_client_secret")
        instance = self.instance
        if secret is not None and not self.service_secret_entered and instance.pk is not None and (
            cleaned.get("authentication") != instance.authentication
            or (not self.is_cloud() and cleaned.get("base_url") != normalize_base_url(instance.base_url))
        ):
            self.add_error("service_client_secret", ValidationError(messages.SERVICE_SECRET_FOR_ANOTHER,
                                                                    code="service_secret_for_another"))
        elif secret in (None, "") and "service_client_secret" not in self.errors:
            self.add_error("service_client_secret", ValidationError(messages.SERVICE_SECRET_MISSING,
                                                                    code="service_secret_missing"))
        if not self.is_cloud() and cleaned.get("scope") not in DATA_CENTER_SERVICE_SCOPES:
            self.add_error("scope", ValidationError(messages.SERVICE_SCOPE_ONLY_READ_WRITE,
                                                    code="service_scope"))
        if self.errors:
            return
        draft = ALMAccount(
            name=cleaned.get("name") or "", authentication=cleaned["authentication"], base_url=cleaned["base_url"],
            service_client_id=cleaned["service_client_id"], service_client_secret=secret,
            service_client_secret_base_url=cleaned["base_url"] if self.service_secret_entered else
            instance.service_client_secret_base_url, scope=cleaned.get("scope") or "",
            cloud_scopes=cleaned.get("cloud_scopes") or "", jira_ca_certificate=cleaned.get("jira_ca_certificate", ""))
        try:
            self.service_check = service_accounts.check(draft)
        except service_accounts.ServiceAccountError as exc:
            field = exc.field if exc.field in self.fields else None
            self.add_error(field, ValidationError(str(exc), code="service_account_check"))

    def _clean_cloud(self, cleaned):
        """A Jira Cloud site is an https origin (no context path); the product needs some scope besides
        offline_access. The Client Secret is not bound to the site URL: it only ever goes to ATLASSIAN_AUTH_URL."""
        # The Cloud form hides "Jira CA certificate (PEM)": one pasted for a Data Center host is forgotten, never
        # kept for Atlassian's hosts (where the deployment's Atlassian secret is sent).
        cleaned["jira_ca_certificate"] = ""
        base_url = cleaned.get("base_url")
        if base_url:
            parts = urlsplit(base_url)
            if parts.scheme != "https" or parts.path not in ("", "/"):
                self.add_error("base_url", ValidationError(
                    "A Jira Cloud site URL is https://<your-site>.atlassian.net, without a path: the address in "
                    "your browser when you open Jira Cloud, up to the first '/' after the host.",
                    code="cloud_site_url",
                ))
        scopes = cleaned.get("cloud_scopes", "").split()
        if "read:jira-user" not in scopes:
            # /myself needs it: without it nobody can tell which Atlassian user a grant belongs to.
            self.add_error("cloud_scopes", ValidationError(
                "read:jira-user is needed: it tells which Atlassian user each connection acts as.", code="no_scope"))
        if bool(cleaned.get("client_id")) and cleaned.get("client_secret") in (None, ""):
            self.add_error("client_secret", ValidationError(
                "Your own Atlassian app needs its Secret too (developer console → your app → Settings). Leave both "
                "blank to use this deployment's app.", code="cloud_secret_missing"))

    def clean_callback_url(self):
        value = self.cleaned_data.get("callback_url") or ""
        if self.instance.pk is not None:
            return self.instance.callback_id
        if not is_well_formed_callback_id(value):
            raise ValidationError("The callback URL of this form is not valid; reload the page.")
        if ALMAccount.objects.filter(callback_id=value).exists():
            self.data = self.data.copy()
            self.data[self.add_prefix("callback_url")] = self.pending_callback_id()
            raise ValidationError(
                "This Callback URL was just used by another ALM account. A new one is shown: copy it into Jira's "
                "Redirect URL."
            )
        return value

    def save(self, commit=True):
        if self.instance.pk is None and self.cleaned_data.get("callback_url"):
            self.instance.callback_id = self.cleaned_data["callback_url"]
        return super().save(commit=commit)

    def forget_pending_callback_id(self):
        if self.request is not None:
            self.request.session.pop(PENDING_CALLBACK_SESSION_KEY, None)
