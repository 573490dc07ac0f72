"""`stack restart`: the web replicas replaced one at a time behind nginx, with no failed request."""

from __future__ import annotations

import time

from deploy.local._proc import ServiceError
from deploy.local.gunicorn import STOP_TIMEOUT
from deploy.local.stack.processes import Stack


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
