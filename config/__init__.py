"""The project package: settings, URLs, WSGI entry point and cross-cutting middleware."""
