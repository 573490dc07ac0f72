"""Deployment assets and helpers for every environment."""
