"""The scaled stack on one box, from local binaries: `make stack` and its companions.

    python -m deploy.local.stack start   [--dir D] [--replicas N] [--port P]
    python -m deploy.local.stack status  [--dir D] [--json]
    python -m deploy.local.stack restart [--dir D]
    python -m deploy.local.stack revive  [--dir D]
    python -m deploy.local.stack down    [--dir D]

Postgres (a primary and one streaming standby), Redis and RabbitMQ come from the launchers in
deploy/local/, the code the test suite starts its own services with. On top of them: N gunicorn
web replicas on free loopback ports, nginx (deploy/nginx/todo-scale.conf.template) balancing
over them on PORT, one Celery worker, exactly one beat, the outbox relay and Prometheus
(deploy/prometheus/prometheus.local.yml.template), all wired through the environment as a
production deployment is. Every process runs in the background in a session of its own, with its
output in D/logs/; D/stack.json records them for `status`, `restart` and `down`. The services'
data is in a directory `start` makes under the system's temporary directory (TMPDIR, else
/tmp), so that the postgres, rabbitmq and nobody users reach it wherever the project is; `down`
copies the services' logs into D/logs/ and removes it.

Defaults come from the environment: STACK_DIR (`.stack` in the project), REPLICAS (3) and PORT
(8000), so `make stack REPLICAS=5 PORT=9000` works as expected. STACK_PGBOUNCER=1 (`--pgbouncer`)
puts one PgBouncer in transaction pooling mode (deploy/local/pgbouncer.py) between every Django
process and Postgres, and sets DATABASE_TRANSACTION_POOLING=true for them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from deploy.local._proc import ROOT, ServiceError
from deploy.local.stack.processes import Stack
from deploy.local.stack.restart import restart, revive
from deploy.local.stack.start import start
from deploy.local.stack.status import pgbouncer_pools, print_status, scrape_targets, status
from deploy.local.stack.teardown import down, remove_runtime_state


def _flag(name: str) -> bool:
    """A yes/no environment variable: unset or empty is no; a word other than these is an error
    (a typo must not quietly start the other stack)."""
    word = (os.environ.get(name) or "").strip().lower()
    if word in {"", "0", "false", "no", "off"}:
        return False
    if word in {"1", "true", "yes", "on"}:
        return True
    raise ServiceError(f"{name} must be 1/true/yes/on or 0/false/no/off, not {word!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("STACK_DIR") or ROOT / ".stack"),
        help="where the stack keeps its state and logs (STACK_DIR, default .stack)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start_parser = sub.add_parser("start", help="start the whole stack in the background")
    start_parser.add_argument("--replicas", type=int, default=int(os.environ.get("REPLICAS") or 3))
    start_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    start_parser.add_argument(
        "--pgbouncer",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="PgBouncer (transaction pooling) in front of Postgres (STACK_PGBOUNCER, default off)",
    )
    status_parser = sub.add_parser("status", help="each process's pid, port and state; replication")
    status_parser.add_argument("--json", action="store_true", help="print one JSON document")
    sub.add_parser("restart", help="rolling restart of the web replicas, no failed request")
    sub.add_parser("revive", help="start again every process of the stack that is down")
    sub.add_parser("down", help="stop everything and remove all but the logs")
    args = parser.parse_args(argv)

    stack = Stack(args.dir)
    # A SIGTERM (a CI timeout, `kill`) during start must run the same clean-up as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        if args.command == "start":
            pgbouncer = _flag("STACK_PGBOUNCER") if args.pgbouncer is None else args.pgbouncer
            start(stack, replicas=args.replicas, port=args.port, pgbouncer=pgbouncer)
        elif args.command == "down":
            if not stack.state_path.exists() and not stack.leftovers():
                print(f"no stack in {stack.dir}: nothing to stop")
                # Whatever a failed start left behind (data directories) still goes.
                remove_runtime_state(stack)
                return 0
            down(stack)
        else:
            if not stack.state_path.exists():
                print(f"no stack in {stack.dir}: start one with `make stack`", file=sys.stderr)
                return 1
            stack.load()
            if args.command == "restart":
                restart(stack)
            elif args.command == "revive":
                revived = revive(stack, status(stack))
                print(f"revived: {', '.join(revived)}" if revived else "nothing was down")
            elif args.json:
                document = {
                    "dir": str(stack.dir),
                    "data_dir": str(stack.data_dir or stack.dir),
                    "url": stack.url,
                    "token": stack.state.get("token"),
                    "processes": (rows := status(stack)),
                    "down": [row["name"] for row in rows if not row["alive"]],
                    "prometheus_targets": scrape_targets(stack),
                    "pgbouncer_pools": pgbouncer_pools(stack),
                }
                print(json.dumps(document, indent=2))
            else:
                return print_status(stack, status(stack))
    except (ServiceError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
