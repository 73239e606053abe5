"""The "Create link" form, with Jira's field names and one Redirect URL only."""

from django import forms

from .models import IncomingLink


class IncomingLinkForm(forms.ModelForm):
    class Meta:
        model = IncomingLink
        fields = ["name", "redirect_uris", "permission"]
        labels = {"name": "Name", "redirect_uris": "Redirect URL", "permission": "Permission"}
        help_texts = {
            "redirect_uris": "Where Jira sends the user back after consent; compared character by character.",
        }
        widgets = {"redirect_uris": forms.URLInput(attrs={"size": 80})}

    def clean_redirect_uris(self):
        url = self.cleaned_data["redirect_uris"].strip()
        if not url:
            raise forms.ValidationError("Enter the Redirect URL.")
        if any(ch.isspace() for ch in url):
            raise forms.ValidationError("Enter a single Redirect URL.")
        return url
