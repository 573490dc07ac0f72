"""Tests of the deploy files: manifests, the gunicorn config."""
