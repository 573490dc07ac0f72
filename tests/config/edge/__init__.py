"""Tests of config.edge: the gateway, rate limits and the response cache store."""
