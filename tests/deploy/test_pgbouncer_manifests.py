"""PgBouncer's deployment files: docker-compose's `pgbouncer` service and its env file, the
Kubernetes Component (deploy/k8s/components/pgbouncer/), and both pgbouncer.ini files read by a real
pgbouncer, as `nginx -t` reads nginx's.

No database and no Django: run with
`pytest -p no:django --noconftest tests/deploy/test_pgbouncer_manifests.py`.
"""

import configparser
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
import yaml

from deploy.local import pgbouncer as local_pgbouncer
from deploy.local._proc import ServiceError, as_user, chown_tree, spawn, stop_group, wait_until
from deploy.local.ports import free_port
from tests.deploy.test_manifests import (
    K8S_BASE_DIR,
    K8S_COMPONENTS_DIR,
    K8S_OVERLAYS_DIR,
    K8S_VERSIONS,
    KUBERNETES_VALIDATE,
    ROOT,
    require_binary,
    run,
)

COMPONENT_DIR = K8S_COMPONENTS_DIR / "pgbouncer"
COMPOSE_INI = ROOT / "deploy" / "compose" / "pgbouncer.ini"
COMPOSE_USERLIST = ROOT / "deploy" / "compose" / "pgbouncer-userlist.txt"
COMPOSE_ENV_FILE = ROOT / "deploy" / "compose" / "pgbouncer.env"
APP_SERVICES = ("web", "worker", "beat", "outbox-relay")


def settings_default(name: str) -> int:
    """An integer setting's default, as config/settings.py writes it (no Django here)."""
    source = (ROOT / "config" / "settings.py").read_text()
    match = re.search(rf'env\.int\("{name}", default=([0-9_]+)\)', source)
    assert match, name
    return int(match.group(1))


def parse_ini(text: str) -> configparser.ConfigParser:
    # PgBouncer's values hold `=` (`host=db port=5432 ...`): only the first one separates.
    parser = configparser.ConfigParser(
        delimiters=("=",), comment_prefixes=(";", "#"), interpolation=None
    )
    parser.read_string(text)
    return parser


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def component_ini() -> str:
    return load_yaml(COMPONENT_DIR / "pgbouncer-configmap.yaml")["data"]["pgbouncer.ini"]


def component_userlist() -> str:
    return load_yaml(COMPONENT_DIR / "pgbouncer-secret.yaml")["stringData"]["userlist.txt"]


def compose_config(*args: str) -> dict:
    docker_compose = require_binary("docker-compose")
    result = run(
        [docker_compose, *args, "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        env={**os.environ, "PORT": ""},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


# --- the settings every PgBouncer here shares ----------------------------------------------------
@pytest.mark.parametrize("text", [COMPOSE_INI.read_text(), component_ini()], ids=["compose", "k8s"])
def test_pgbouncer_ini_pools_transactions_and_times_the_standby_out(text):
    ini = parse_ini(text)
    bouncer = ini["pgbouncer"]
    timeout = settings_default("DATABASE_REPLICA_STATEMENT_TIMEOUT")

    assert bouncer["pool_mode"] == "transaction"
    assert bouncer["listen_port"] == "6432"
    assert int(bouncer["query_wait_timeout"]) == local_pgbouncer.QUERY_WAIT_TIMEOUT
    assert bouncer["auth_type"] == "scram-sha-256"
    assert set(ini["databases"]) == {"todo", "todo_replica1"}
    assert "connect_query" not in ini["databases"]["todo"]
    assert ini["databases"]["todo_replica1"].endswith(
        f" dbname=todo connect_query='SET statement_timeout = {timeout}'"
    )
    # The one-box stack's PgBouncer is rendered with the same numbers.
    assert timeout == local_pgbouncer.DEFAULT_STATEMENT_TIMEOUT


# --- docker-compose ------------------------------------------------------------------------------
def test_compose_starts_pgbouncer_only_in_its_profile_and_the_app_uses_postgres_by_default():
    services = compose_config()["services"]
    bouncer = services["pgbouncer"]

    assert bouncer["profiles"] == ["pgbouncer"]
    assert re.fullmatch(r"edoburu/pgbouncer:v\d+\.\d+\.\d+-p\d+", bouncer["image"])
    assert sorted(bouncer["volumes"]) == sorted(
        [
            f"{COMPOSE_INI}:/etc/pgbouncer/pgbouncer.ini:ro",
            f"{COMPOSE_USERLIST}:/etc/pgbouncer/userlist.txt:ro",
        ]
    )
    for name in (*APP_SERVICES, "migrate"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"] == "postgres://todo:todo@db:5432/todo", name
        assert env["DATABASE_TRANSACTION_POOLING"] == "false", name
        # Nothing waits on a service that may not run.
        assert "pgbouncer" not in services[name].get("depends_on", {}), name


def test_compose_env_file_points_the_app_at_pgbouncer_in_transaction_mode():
    services = compose_config("--env-file", str(COMPOSE_ENV_FILE), "--profile", "pgbouncer")[
        "services"
    ]
    databases = parse_ini(COMPOSE_INI.read_text())["databases"]

    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["DATABASE_URL"] == "postgres://todo:todo@pgbouncer:6432/todo", name
        assert env["DATABASE_REPLICA_URLS"] == "postgres://todo:todo@pgbouncer:6432/todo_replica1"
        assert env["DATABASE_TRANSACTION_POOLING"] == "true", name
    assert {"todo", "todo_replica1"} <= set(databases)
    # Migrations run once, before PgBouncer may be up: on the primary itself.
    migrate = services["migrate"]["environment"]
    assert migrate["DATABASE_URL"] == "postgres://todo:todo@db:5432/todo"
    assert migrate["DATABASE_TRANSACTION_POOLING"] == "false"
    assert "COMPOSE_PROFILES=pgbouncer" in COMPOSE_ENV_FILE.read_text().splitlines()
    # The password PgBouncer checks and logs in to Postgres with is the app's.
    assert COMPOSE_USERLIST.read_text() == '"todo" "todo"\n'


# --- Kubernetes ----------------------------------------------------------------------------------
def render_with_component(tmp_path: Path) -> list[dict]:
    kubectl = require_binary("kubectl")
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(K8S_BASE_DIR, tmp_path)],
                "components": [os.path.relpath(COMPONENT_DIR, tmp_path)],
            }
        )
    )
    result = run([kubectl, "kustomize", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    output = tmp_path / "rendered.yaml"
    output.write_text(result.stdout)
    for version in K8S_VERSIONS:
        validated = run([KUBERNETES_VALIDATE, "--strict", "-k", version, str(output)])
        assert validated.returncode == 0, validated.stdout + validated.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_only_production_lists_the_component_and_it_lists_each_of_its_files():
    base = load_yaml(K8S_BASE_DIR / "kustomization.yaml")
    dev = load_yaml(K8S_OVERLAYS_DIR / "dev" / "kustomization.yaml")
    production = load_yaml(K8S_OVERLAYS_DIR / "production" / "kustomization.yaml")
    component = load_yaml(COMPONENT_DIR / "kustomization.yaml")

    assert "components" not in base
    assert "components" not in dev
    assert "../../components/pgbouncer" in production["components"]
    assert component["kind"] == "Component"
    listed = set(component["resources"]) | {patch["path"] for patch in component["patches"]}
    assert listed == {p.name for p in COMPONENT_DIR.glob("*.yaml")} - {"kustomization.yaml"}


def test_the_component_renders_validates_and_points_every_pod_at_pgbouncer(tmp_path):
    docs = {(doc["kind"], doc["metadata"]["name"]): doc for doc in render_with_component(tmp_path)}
    deployment = docs[("Deployment", "pgbouncer")]
    service = docs[("Service", "pgbouncer")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    secret = docs[("Secret", "todo-scale-secrets")]["stringData"]
    databases = parse_ini(docs[("ConfigMap", "pgbouncer-config")]["data"]["pgbouncer.ini"])

    assert (
        docs[("ConfigMap", "todo-scale-config")]["data"]["DATABASE_TRANSACTION_POOLING"] == "true"
    )
    port = service["spec"]["ports"][0]["port"]
    host = service["metadata"]["name"]
    assert secret["DATABASE_URL"] == f"postgres://todo:replace-me@{host}:{port}/todo"
    assert (
        secret["DATABASE_REPLICA_URLS"] == f"postgres://todo:replace-me@{host}:{port}/todo_replica1"
    )
    assert {"todo", "todo_replica1"} <= set(databases["databases"])
    # The rest of the app's settings are the base's.
    assert secret["REDIS_URL"] == load_yaml(K8S_BASE_DIR / "secret.yaml")["stringData"]["REDIS_URL"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert container["ports"] == [{"name": "postgres", "containerPort": port}]
    assert container["image"] == compose_config()["services"]["pgbouncer"]["image"]
    assert deployment["spec"]["replicas"] >= 2
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # Only the web pods are behind the web Service and counted by its PDB and HPA.
    web_selector = docs[("Service", "todo-web")]["spec"]["selector"]
    assert not web_selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert "replace-me" in component_userlist()


# --- a real pgbouncer reads each file ------------------------------------------------------------
def start_with(ini_text: str, userlist: str, directory: Path) -> tuple[subprocess.Popen, int]:
    """pgbouncer on `ini_text`, changed only to listen on a free loopback port and to find its
    userlist in `directory`."""
    port = free_port()
    text = re.sub(r"(?m)^listen_addr = .*$", "listen_addr = 127.0.0.1", ini_text)
    text = re.sub(r"(?m)^listen_port = .*$", f"listen_port = {port}", text)
    text = re.sub(r"(?m)^auth_file = .*$", f"auth_file = {directory / 'userlist.txt'}", text)
    (directory / "pgbouncer.ini").write_text(text)
    (directory / "userlist.txt").write_text(userlist)
    chown_tree(directory, local_pgbouncer.USER)
    argv = [local_pgbouncer.binary(), str(directory / "pgbouncer.ini")]
    log = directory / "pgbouncer.log"
    proc = spawn(as_user(local_pgbouncer.USER, argv), env=None, log=log)
    return proc, port


@pytest.mark.parametrize(
    ("ini_text", "userlist"),
    [
        (COMPOSE_INI.read_text(), COMPOSE_USERLIST.read_text()),
        (component_ini(), component_userlist()),
    ],
    ids=["compose", "k8s"],
)
def test_pgbouncer_starts_on_the_file_and_serves_its_databases(ini_text, userlist):
    try:
        local_pgbouncer.binary()
    except ServiceError:
        pytest.skip("pgbouncer is not installed, so this file cannot be checked here")
    user, password = re.fullmatch(r'"(\w+)" "([^"]*)"\n', userlist).groups()
    # A directory the postgres user can enter when we are root (pgbouncer refuses root).
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-check-"))
    directory.chmod(0o755)
    proc, port = start_with(ini_text, userlist, directory)
    try:

        def console() -> psycopg.Connection:
            return psycopg.connect(
                host="127.0.0.1",
                port=port,
                user=user,
                password=password,
                dbname="pgbouncer",
                autocommit=True,
                cursor_factory=psycopg.ClientCursor,
            )

        def answers() -> bool:
            assert proc.poll() is None, (directory / "pgbouncer.log").read_text()
            try:
                console().close()
            except psycopg.OperationalError:
                return False
            return True

        wait_until(answers, timeout=10, what="pgbouncer to answer on its console")
        with console() as conn:
            databases = {row[0]: row for row in conn.execute("SHOW DATABASES").fetchall()}
            config = {row[0]: row[1] for row in conn.execute("SHOW CONFIG").fetchall()}
    finally:
        stop_group(proc.pid, timeout=5, proc=proc)
        shutil.rmtree(directory, ignore_errors=True)

    assert {"todo", "todo_replica1", "pgbouncer"} <= set(databases)
    assert config["pool_mode"] == "transaction"
    assert config["query_wait_timeout"] == str(local_pgbouncer.QUERY_WAIT_TIMEOUT)
    assert config["auth_type"] == "scram-sha-256"
