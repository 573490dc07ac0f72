"""Tests of the load scripts in bench/: the Locust journey `make load` runs."""
