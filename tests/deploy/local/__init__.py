"""Tests of deploy.local: the private service launchers and the one-box stack."""
