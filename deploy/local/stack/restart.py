"""`stack restart`: the web replicas replaced one at a time behind nginx, with no failed request.
`stack revive`: every process of the stack found dead started again."""

from __future__ import annotations

import time

from deploy.local._proc import ServiceError
from deploy.local.celery_worker import worker_answers
from deploy.local.gunicorn import STOP_TIMEOUT, http_status
from deploy.local.postgres import PostgresCluster
from deploy.local.rabbitmq import RabbitMQNode
from deploy.local.redis import RedisServer
from deploy.local.stack.environment import WORKER_NAME
from deploy.local.stack.processes import Stack
from deploy.local.stack.start import spawn_beat, spawn_relay, spawn_worker


def restart(stack: Stack) -> None:
    """Restart the web replicas one at a time, with no failed request.

    Each replica is marked `down` in nginx and nginx reloaded; once nginx's old workers have
    finished their requests nothing reaches it, so a SIGTERM (gunicorn's graceful stop)
    loses nothing. Then a new gunicorn starts on the same port, and the replica goes back
    into nginx once it answers /readyz. The others serve meanwhile.

    Why not gunicorn's HUP reload: it keeps the master, so the Python interpreter, gunicorn
    itself, its configuration file and its environment stay those of the first start, and
    workers that fail to boot leave the replica in nginx regardless. A new master behind a
    drained upstream replaces all of it, and is what a rolling update of pods does.
    """
    began = time.monotonic()
    webs = stack.web()
    if len(webs) < 2:
        print(
            "Only one web replica: nothing serves while it restarts (expect 503s). "
            "Start the stack with REPLICAS=2 or more for a rolling restart.",
            flush=True,
        )
    for web in webs:
        step = time.monotonic()
        name, old_pid = web["name"], web["pid"]
        stack.render_nginx(down=frozenset({name}))
        stack.reload_nginx(drain=True)
        stack.stop(web, timeout=STOP_TIMEOUT)
        new = stack.spawn_web(name, web["port"])
        try:
            stack.wait_web(new)
        except ServiceError:
            print(f"{name} did not come back; it stays out of nginx", flush=True)
            raise
        stack.render_nginx()
        stack.reload_nginx(drain=False)
        took = time.monotonic() - step
        print(f"  {name}: pid {old_pid} -> {new['pid']}, back in {took:.1f} s", flush=True)
    print(f"Rolling restart done in {time.monotonic() - began:.1f} s", flush=True)


def revive(stack: Stack, rows: list[dict]) -> list[str]:
    """Start again every process `status` found dead (its `rows`), on its recorded port; return
    their names. Nothing supervises the stack's processes: a replica, the worker or Redis that
    was killed stays down until this (or `down` and `start`) brings it back.

    A web replica is kept out of nginx meanwhile (nginx skips a dead one anyway, after a
    refused connection); the services restart from their own directories: Redis empty, the
    standby catching up from the primary, RabbitMQ with its durable queues.
    """
    processes = stack.state["processes"]
    dead = [row["name"] for row in rows if not row["alive"]]
    for name in dead:
        record = processes.get(name)
        if name in stack.state["web"]:
            stack.wait_web(stack.spawn_web(name, record["port"]))
        elif name == "worker":
            new = spawn_worker(stack, record["port"])
            stack.wait_ready(
                new,
                lambda: worker_answers(stack.state["broker_url"], WORKER_NAME),
                "the Celery worker to answer a ping",
            )
        elif name == "beat":
            spawn_beat(stack)
        elif name == "relay":
            port = record["port"]
            stack.wait_ready(
                spawn_relay(stack, port),
                lambda port=port: http_status(port, "/metrics") == 200,
                "the relay to serve its metrics",
            )
        elif name == "redis":
            RedisServer.load(stack.service_dir("redis")).start()
        elif name == "rabbitmq":
            RabbitMQNode.load(stack.service_dir("rabbitmq")).start()
        elif name.startswith("postgres-replica"):
            cluster = PostgresCluster.load(stack.service_dir("postgres"))
            cluster.start_replica(int(name.removeprefix("postgres-replica")) - 1)
        else:
            # nginx, the primary, PgBouncer and Prometheus: `make stack-down` and `make stack`.
            print(f"  {name} is down and is not revived: restart the stack", flush=True)
            continue
        print(f"  {name}: started again", flush=True)
    return dead
