from django.urls import path

from . import views

app_name = "alm_accounts"

urlpatterns = [
    # The callback URL Jira redirects to after consent (the link's Redirect URL).
    path("oauth/jira/callback/<str:callback_id>/", views.oauth_callback, name="oauth_callback"),
]
