"""The scaled stack on one box, from local binaries: `make stack` and its companions.

`python -m deploy.local.stack start|status|restart|down` (see __main__.py). The services come
from the launchers in deploy/local/, the code the test suite starts its own services with; the
modules here add the web replicas, nginx, the Celery processes and Prometheus, wired through the
environment as a production deployment is: environment.py (the wiring), processes.py (the state
file and process records), start.py, status.py, restart.py (rolling) and teardown.py (`down`).
"""
