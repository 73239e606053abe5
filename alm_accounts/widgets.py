"""The Callback URL box with its Copy URL button."""

from django import forms
from django.utils.html import format_html

from .models import callback_url_for
from .validators import is_well_formed_callback_id


class CallbackURLWidget(forms.Widget):
    """Shows the callback URL built from the callback id the field carries (posted as a hidden value)."""

    class Media:
        js = ["alm_accounts/copy_url.js"]
        css = {"all": ["alm_accounts/alm_accounts.css"]}

    def render(self, name, value, attrs=None, renderer=None):
        url = callback_url_for(value) if is_well_formed_callback_id(value) else ""
        return format_html(
            '<input type="hidden" name="{}" value="{}">'
            '<div class="callback-url-box">'
            '<input type="text" readonly class="vTextField callback-url" id="callback-url" value="{}" size="80"'
            ' aria-label="Callback URL">'
            ' <button type="button" class="button copy-url" data-copy-target="callback-url">Copy URL</button>'
            ' <span class="copy-url-status" role="status" aria-live="polite"></span>'
            "</div>",
            name,
            value or "",
            url,
        )


class CACertificateInput(forms.Textarea):
    """Never renders a private key pasted by mistake back into the page (the form refuses it)."""

    def format_value(self, value):
        value = super().format_value(value)
        return "" if value and "PRIVATE KEY" in value else value
