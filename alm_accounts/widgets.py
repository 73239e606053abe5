"""The Callback URL box with its Copy URL button."""

from django import forms
from django.utils.html import format_html

from .conf import app_settings
from .models import ALMAccount, callback_url_for, cloud_callback_url
from .validators import is_well_formed_callback_id


class CallbackURLWidget(forms.Widget):
    """Shows the callback URL built from the callback id the field carries (posted as a hidden value)."""

    class Media:
        js = ["alm_accounts/copy_url.js", "alm_accounts/provider_fields.js"]
        css = {"all": ["alm_accounts/alm_accounts.css"]}

    def render(self, name, value, attrs=None, renderer=None):
        """Jira Data Center's callback URL (one per account) and this deployment's one Jira Cloud callback URL;
        provider_fields.js shows the one of the chosen authentication."""
        url = callback_url_for(value) if is_well_formed_callback_id(value) else ""
        if app_settings.ATLASSIAN_CLIENT_ID:
            cloud_note = ("This deployment's Atlassian app is configured: nothing to register. Only if this account "
                          "uses its own Atlassian app (Client ID below), register this callback URL in that app.")
        else:
            cloud_note = ("Register it as the Callback URL of the Atlassian app in the developer console "
                          "(developer.atlassian.com → your app → Authorization → OAuth 2.0 (3LO)). It is the same "
                          "for every Jira Cloud account of this deployment.")
        return format_html(
            '<input type="hidden" name="{}" value="{}">'
            '<div class="callback-url-box" data-provider="{}">'
            '<input type="text" readonly class="vTextField callback-url" id="callback-url" value="{}" size="80"'
            ' aria-label="Callback URL">'
            ' <button type="button" class="button copy-url" data-copy-target="callback-url">Copy URL</button>'
            ' <span class="copy-url-status" role="status" aria-live="polite"></span>'
            "</div>"
            '<div class="callback-url-box" data-provider="{}" hidden>'
            '<input type="text" readonly class="vTextField callback-url" id="cloud-callback-url" value="{}" size="80"'
            ' aria-label="Jira Cloud callback URL">'
            ' <button type="button" class="button copy-url" data-copy-target="cloud-callback-url">Copy URL</button>'
            ' <span class="copy-url-status" role="status" aria-live="polite"></span>'
            '<p class="help cloud-callback-note">{}</p>'
            "</div>",
            name,
            value or "",
            ALMAccount.Authentication.JIRA_SERVER_OAUTH2,
            url,
            ALMAccount.Authentication.JIRA_CLOUD_OAUTH2,
            cloud_callback_url(),
            cloud_note,
        )


class CACertificateInput(forms.Textarea):
    """Never renders a private key pasted by mistake back into the page (the form refuses it)."""

    def format_value(self, value):
        value = super().format_value(value)
        return "" if value and "PRIVATE KEY" in value else value
