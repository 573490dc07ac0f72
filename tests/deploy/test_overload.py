"""Backpressure end to end: real gunicorn replicas behind the deployment's nginx config
(deploy/nginx/todo-scale.conf.template, each replica bounded by deploy/capacity.py), driven at
what they run at once and then at four times what nginx admits.

Under overload every answer is a 2xx or a refusal with Retry-After (nginx's 503, or a rate
limit's 429); a POST with an Idempotency-Key that got a 2xx was written exactly once and one
refused with 503 not at all; and what is accepted is answered without queueing: its median is a
fraction of what the same overload gets through nginx with no bound, measured in the same run (a
ratio, not a ceiling in milliseconds: the machine is shared). Around it, the failures the same
config must keep telling apart: a replica that refuses connections, one that takes a POST and
dies, and no replica at all.

The load generator is asyncio in this process: one keep-alive connection per client, each
client sending its next request as soon as it has the answer to the last one (a closed loop), so
the concurrency is the number of clients. Every phase is bounded by a request count as well as
by its few seconds.
"""

import asyncio
import contextlib
import itertools
import json
import math
import re
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

from deploy import capacity
from deploy.local.gunicorn import Gunicorn
from deploy.local.nginx import ACCESS_LOG, ERROR_LOG, Nginx, render_template
from deploy.local.ports import free_port, free_ports
from tests.factories import TodoFactory, TokenFactory, UserFactory
from tests.servers import replica_env
from todos.models import Todo

pytestmark = pytest.mark.django_db(transaction=True)

REPLICAS = 2
# One worker each: the bound is per replica, and two one-worker replicas leave room on a 2-core
# box for Postgres, Redis, nginx and the load generator.
WORKERS = 1
MAX_CONNS = capacity.upstream_max_conns(WORKERS)
# What the replicas run at once (a request per thread), and what nginx lets them hold.
RUNNING = REPLICAS * WORKERS * capacity.THREADS
ADMITTED = REPLICAS * MAX_CONNS
OVERLOAD_CLIENTS = 4 * ADMITTED
CAPACITY_SECONDS, CAPACITY_REQUESTS = 2.0, 4_000
OVERLOAD_SECONDS, OVERLOAD_REQUESTS = 4.0, 12_000
# A refused client waits this long and tries again. A real one waits Retry-After (1 s); the
# test's clients come back sooner so the few seconds keep the replicas saturated, and they do
# not spin on refusals that come back within milliseconds.
REFUSED_PAUSE = 0.05
# The one timing assertion, ratios in one run: behind the bound an accepted request waits for at
# most half a request per thread (MAX_CONNS = 1.5 x threads), where without it each of the
# overload's clients waits for every request ahead of it (4 x 1.5 = 6 per thread). The medians'
# ratio measured 0.21-0.26 on a 2-core box (p99s: 0.43-0.53, the tail being the machine's noise);
# a bound that did nothing would make both about 1.
BOUNDED_MEDIAN_SHARE = 0.5
# An answer later than this counts as none; nginx itself gives a replica 35 s.
ANSWER_TIMEOUT = 10.0
# The reader's list (one page, from the response cache after the first read).
READER_TODOS = 20


# The access log line of a request nginx answered itself: `time addr "request" status k=v ...`.
LOG_STATUS = re.compile(r'\S+ \S+ "[^"]*" (\d{3}) ')
LOG_FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')


# --- the load generator --------------------------------------------------------------------------
@dataclass
class Outcome:
    kind: str  # "create" or "list"
    status: int  # 0: no answer (connection error or timeout)
    headers: dict[str, str]
    body: bytes
    seconds: float
    key: str | None = None  # the create's Idempotency-Key, also the todo's title
    error: str | None = None


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return (
            int(status_line.split()[1]),
            headers,
            await reader.readexactly(int(headers["content-length"])),
        )
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
        return int(status_line.split()[1]), headers, body
    return int(status_line.split()[1]), headers, await reader.read()


class Connection:
    """One client's keep-alive connection, opened again after nginx or an error closed it."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(request)
        await self.writer.drain()
        status, headers, body = await read_response(self.reader)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Workload:
    """Half the clients create todos as one user, each with a key of its own; the other half
    read another user's list."""

    writer_token: str
    reader_token: str
    keys: Iterator[int] = field(default_factory=itertools.count)

    def request(self, client: int) -> tuple[str, bytes, str | None]:
        if client % 2:
            head = (
                f"GET /api/todos HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Token {self.reader_token}\r\n\r\n"
            )
            return "list", head.encode(), None
        key = f"overload-{next(self.keys)}"
        body = json.dumps({"title": key}).encode()
        head = (
            f"POST /api/todos HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Token {self.writer_token}\r\nContent-Type: application/json\r\n"
            f"Idempotency-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return "create", head.encode() + body, key


def drive(port: int, workload: Workload, clients: int, seconds: float, limit: int) -> list[Outcome]:
    """`clients` closed-loop clients for `seconds` or `limit` requests, whichever ends first."""
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + seconds

    async def client(number: int) -> None:
        connection = Connection(port)
        try:
            while time.monotonic() < deadline and len(outcomes) < limit:
                kind, request, key = workload.request(number)
                started = time.perf_counter()
                try:
                    status, headers, body = await asyncio.wait_for(
                        connection.exchange(request), ANSWER_TIMEOUT
                    )
                    error = None
                except (OSError, EOFError, ValueError, TimeoutError) as exc:
                    connection.close()
                    status, headers, body, error = 0, {}, b"", repr(exc)
                elapsed = time.perf_counter() - started
                outcomes.append(Outcome(kind, status, headers, body, elapsed, key, error))
                if status in (429, 503) or error:
                    await asyncio.sleep(REFUSED_PAUSE)
        finally:
            connection.close()

    async def everyone() -> None:
        await asyncio.gather(*(client(number) for number in range(clients)))

    asyncio.run(everyone())
    return outcomes


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summary(name: str, outcomes: list[Outcome], seconds: float) -> str:
    accepted = [o.seconds for o in outcomes if 200 <= o.status < 300]
    refused = [o.seconds for o in outcomes if o.status in (429, 503)]
    statuses = dict(sorted(Counter(o.status for o in outcomes).items()))
    line = (
        f"{name}: {len(outcomes)} requests in {seconds:.1f} s, statuses {statuses}, "
        f"{len(accepted) / seconds:.0f} accepted/s"
    )
    if accepted:
        line += (
            f", accepted p50 {percentile(accepted, 0.5) * 1000:.1f} ms"
            f" p99 {percentile(accepted, 0.99) * 1000:.1f} ms"
        )
    if refused:
        line += (
            f", refused p50 {percentile(refused, 0.5) * 1000:.1f} ms"
            f" p99 {percentile(refused, 0.99) * 1000:.1f} ms"
        )
    return line


# --- processes -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def replicas(django_db_setup) -> Iterator[list[Gunicorn]]:
    """REPLICAS gunicorn replicas as deployed, on the test database and the suite's Redis, with
    rate limits off: what is refused here is refused by nginx's bound."""
    env = replica_env(
        REDIS_URL=settings.REDIS_URL,
        WEB_CONCURRENCY=str(WORKERS),
        RATE_LIMIT_USER="off",
        RATE_LIMIT_IP="off",
    )
    with (
        tempfile.TemporaryDirectory(prefix="overload-") as directory,
        contextlib.ExitStack() as stack,
    ):
        servers = []
        # Started together, waited for together: each boots Django for a couple of seconds.
        for number in range(REPLICAS):
            server = Gunicorn.spawn(env=env, log=Path(directory) / f"web{number}.log")
            stack.callback(server.stop)
            servers.append(server)
        for server in servers:
            server.wait_ready("/healthz")
        yield servers


@contextlib.contextmanager
def proxy(upstreams: list[int], max_conns: int = MAX_CONNS) -> Iterator[Nginx]:
    """nginx with the deployment's config over `upstreams` (ports), each bounded by `max_conns`
    (0: no bound, nginx's own meaning of it).

    A directory made under the system's temporary directory: run as root, nginx's workers are
    `nobody` and must be able to enter it (deploy/local/nginx.py)."""
    prefix = Path(tempfile.mkdtemp(prefix="overload-nginx-"))
    port = free_port()
    server = Nginx(prefix, port)
    try:
        server.prepare()
        server.configure(render_template(port, [(u, False) for u in upstreams], max_conns))
        server.start(log=prefix / "nginx.log")
        server.wait_ready()
        yield server
    finally:
        server.stop()
        shutil.rmtree(prefix, ignore_errors=True)


def access_log(server: Nginx) -> list[dict[str, str]]:
    """The lines nginx wrote for requests it answered itself: their status and key=value fields
    (the `unavailable` log_format). nginx logs a request after answering it, so it is stopped
    first: then every line is written."""
    server.stop()
    path = server.prefix / ACCESS_LOG
    entries = []
    for line in path.read_text().splitlines() if path.exists() else []:
        fields = {name: value.strip('"') for name, value in LOG_FIELD.findall(line)}
        entries.append({"status": LOG_STATUS.match(line).group(1), **fields})
    return entries


def request(port: int, method: str, path: str, **options) -> Outcome:
    """One request on a connection of its own."""

    async def once() -> Outcome:
        connection = Connection(port)
        started = time.perf_counter()
        try:
            status, headers, body = await asyncio.wait_for(
                connection.exchange(raw(method, path, **options)), ANSWER_TIMEOUT
            )
        finally:
            connection.close()
        return Outcome(method, status, headers, body, time.perf_counter() - started)

    return asyncio.run(once())


def raw(
    method: str, path: str, *, token: str | None = None, body: dict | None = None, headers=()
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if token:
        lines.append(f"Authorization: Token {token}")
    data = json.dumps(body).encode() if body is not None else b""
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def refused_properly(outcome: Outcome) -> bool:
    """A refusal a client can act on: JSON saying why, and when to come back."""
    return outcome.headers.get("retry-after", "").isdigit() and "detail" in json.loads(outcome.body)


# --- overload ------------------------------------------------------------------------------------
def test_an_overloaded_tier_sheds_what_it_cannot_take_fast_and_loses_no_write(replicas, capsys):
    # given a writer, and a reader with a list to read
    writer, reader = UserFactory(), UserFactory()
    for number in range(READER_TODOS):
        TodoFactory(owner=reader, title=f"todo {number}")
    workload = Workload(TokenFactory(user=writer).key, TokenFactory(user=reader).key)

    with proxy([server.port for server in replicas]) as nginx:
        # when the replicas get as many clients as they have threads
        started = time.monotonic()
        measured = drive(nginx.port, workload, RUNNING, CAPACITY_SECONDS, CAPACITY_REQUESTS)
        measured_seconds = time.monotonic() - started
        # and then four times as many as nginx lets them hold
        started = time.monotonic()
        overload = drive(
            nginx.port, workload, OVERLOAD_CLIENTS, OVERLOAD_SECONDS, OVERLOAD_REQUESTS
        )
        overload_seconds = time.monotonic() - started
        logged = access_log(nginx)
    # and the same overload through nginx with no bound, for comparison
    with proxy([server.port for server in replicas], max_conns=0) as nginx:
        started = time.monotonic()
        unbounded = drive(
            nginx.port, workload, OVERLOAD_CLIENTS, OVERLOAD_SECONDS, OVERLOAD_REQUESTS
        )
        unbounded_seconds = time.monotonic() - started

    with capsys.disabled():
        print(f"\nbound: {MAX_CONNS} per replica, {ADMITTED} over {REPLICAS} replicas")
        print(summary(f"capacity ({RUNNING} clients)", measured, measured_seconds))
        print(summary(f"overload ({OVERLOAD_CLIENTS} clients)", overload, overload_seconds))
        print(summary("the same with no bound", unbounded, unbounded_seconds))

    # then at its capacity the tier took everything
    assert measured
    assert all(200 <= o.status < 300 for o in measured), Counter(o.status for o in measured)
    # and overloaded, it answered every request: accepted, or refused with a reason and a delay
    statuses = Counter(o.status for o in overload)
    assert all(o.status in (200, 201, 429, 503) for o in overload), (
        statuses,
        {o.error for o in overload if o.error},
    )
    refusals = [o for o in overload if o.status in (429, 503)]
    assert refusals, f"four times the bound was never refused: {statuses}"
    assert all(refused_properly(o) for o in refusals)
    assert all(o.headers["retry-after"] == "1" for o in refusals if o.status == 503)
    accepted = [o for o in overload if 200 <= o.status < 300]
    assert accepted
    # and what it accepted was answered without queueing behind what it refused: a fraction of
    # the wait the same overload gets when nginx lets every request through
    assert unbounded
    assert all(200 <= o.status < 300 for o in unbounded), Counter(o.status for o in unbounded)
    bounded = [o.seconds for o in accepted]
    everything = [o.seconds for o in unbounded]
    assert percentile(bounded, 0.5) <= BOUNDED_MEDIAN_SHARE * percentile(everything, 0.5)
    assert percentile(bounded, 0.99) <= percentile(everything, 0.99)
    # and every 503 was nginx shedding, none a replica failing
    assert Counter(line["reason"] for line in logged) == {"shed": statuses[503]}

    # then every create that was accepted exists once, and none that was refused exists
    created = Counter(Todo.objects.filter(owner=writer).values_list("title", flat=True))
    creates = [o for o in measured + overload + unbounded if o.kind == "create"]
    accepted_keys = {o.key for o in creates if 200 <= o.status < 300}
    refused_keys = {o.key for o in creates if o.status == 503}
    assert accepted_keys
    assert all(created[key] == 1 for key in accepted_keys)
    assert not refused_keys & set(created)
    assert set(created) == accepted_keys
    # and each was run once: a POST nginx had sent twice would come back replayed
    assert not [o for o in creates if o.headers.get("idempotent-replayed")]


# --- failures around it --------------------------------------------------------------------------
class Swallower:
    """A replica that reads a request and drops the connection without an answer (a worker
    killed mid-request)."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                self.received.append(data)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


def test_a_post_a_replica_received_is_never_sent_to_another(replicas):
    user = UserFactory()
    token = TokenFactory(user=user).key
    swallower = Swallower()
    try:
        # The first request of a fresh nginx goes to the first server: the swallower.
        with proxy([swallower.port, replicas[0].port]) as nginx:
            answer = request(
                nginx.port, "POST", "/api/todos", token=token, body={"title": "sent once"},
                headers=["Idempotency-Key: sent-once"],
            )  # fmt: skip
            logged = access_log(nginx)
    finally:
        swallower.close()

    # The swallower got it, so nginx must not try the live replica: the client is told a
    # replica failed (it may retry with the same key), and nothing was written.
    assert len(swallower.received) == 1
    assert swallower.received[0].startswith(b"POST /api/todos ")
    assert answer.status == 502
    assert refused_properly(answer)
    assert not Todo.objects.filter(owner=user).exists()
    assert [(line["status"], line["reason"]) for line in logged] == [("502", "upstream_error")]
    assert logged[0]["upstream"] == f"127.0.0.1:{swallower.port}"


def test_a_post_whose_connection_was_refused_goes_to_the_next_replica(replicas):
    user = UserFactory()
    token = TokenFactory(user=user).key
    (dead,) = free_ports(1)

    # The first request goes to the first server, where nothing listens.
    with proxy([dead, replicas[0].port]) as nginx:
        answers = [
            request(
                nginx.port, "POST", "/api/todos", token=token, body={"title": f"todo {n}"},
                headers=[f"Idempotency-Key: refused-{n}"],
            )
            for n in range(3)
        ]  # fmt: skip
        errors = (nginx.prefix / ERROR_LOG).read_text()

    # Never sent, so safe to send elsewhere: every POST was written, once.
    assert [a.status for a in answers] == [201, 201, 201]
    assert "connect() failed (111: Connection refused)" in errors
    titles = Counter(Todo.objects.filter(owner=user).values_list("title", flat=True))
    assert titles == {"todo 0": 1, "todo 1": 1, "todo 2": 1}


def test_with_no_replica_up_nginx_answers_at_once_and_logs_why():
    dead = free_ports(2)

    with proxy(dead) as nginx:
        answers = [request(nginx.port, method, "/api/todos") for method in ("GET", "GET", "POST")]
        logged = access_log(nginx)

    # Both replicas tried and refused: 502. Then both are skipped for fail_timeout, and nginx
    # has no replica to offer: 503, as when every one is busy. Each with JSON and Retry-After.
    assert [a.status for a in answers] == [502, 503, 503]
    assert all(refused_properly(a) for a in answers)
    assert [line["reason"] for line in logged] == ["upstream_error", "shed", "shed"]
    assert set(logged[0]["upstream"].split(", ")) == {f"127.0.0.1:{port}" for port in dead}
    assert logged[1]["upstream"] == "todo_web"
