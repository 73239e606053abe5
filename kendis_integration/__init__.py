"""The kendis-integration Django project (settings, urls, wsgi). Its version: CHANGELOG.md names what each changed."""

__version__ = "1.1.0"
