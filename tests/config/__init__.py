"""Tests of the config package: settings, probes and platform endpoints."""
