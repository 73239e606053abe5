"""What `sandbox_setup` brings to life on the Cloud side: two sites, the developer console app, a project per site."""

import uuid

from django.conf import settings

from .models import CloudApp, CloudProject, CloudSite

# Fixed cloud ids, so tests and demos can rely on them.
SITES = {
    "kendis-sandbox": uuid.UUID("5d3c8a6e-1f2b-4c7d-9e8a-0b1c2d3e4f51"),
    "kendis-other": uuid.UUID("a7e4b2c9-6d1f-4a3e-8b5c-9d0e1f2a3b62"),
}
APP_NAME = "Kendis Integration (sandbox)"
DEMO_PROJECT_KEY = "DEMO"


def ensure_sites():
    for name, cloud_id in SITES.items():
        site, _ = CloudSite.objects.update_or_create(name=name, defaults={"cloud_id": cloud_id})
        CloudProject.objects.get_or_create(site=site, key=DEMO_PROJECT_KEY, defaults={"name": "Demo"})


def ensure_app():
    """The app a vendor registers once in the developer console, matching the environment. Returns (app, created)."""
    app, created = CloudApp.objects.get_or_create(
        client_id=settings.SANDBOX_CLOUD_CLIENT_ID,
        defaults={"name": APP_NAME, "callback_url": settings.SANDBOX_CLOUD_CALLBACK_URL},
    )
    app.callback_url = settings.SANDBOX_CLOUD_CALLBACK_URL
    app.set_secret(settings.SANDBOX_CLOUD_CLIENT_SECRET)
    app.save()
    return app, created
