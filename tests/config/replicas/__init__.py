"""Tests of config.replicas: routing on a real streaming standby, sticking, replica health."""
