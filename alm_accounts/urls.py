from django.urls import path

from . import views

app_name = "alm_accounts"

urlpatterns = [
    # The callback URL Jira redirects to after consent (the link's Redirect URL).
    path("oauth/jira/callback/<str:callback_id>/", views.oauth_callback, name="oauth_callback"),
    # Jira Cloud: the one callback URL of this deployment's Atlassian app (the state routes it).
    path("oauth/atlassian/callback/", views.atlassian_callback, name="atlassian_callback"),
]
