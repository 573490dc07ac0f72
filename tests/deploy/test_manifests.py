"""Deployment files checked by their real validators, and the values operators rely on.

No database and no Django: run with
`pytest -p no:django --noconftest tests/deploy/test_manifests.py`.
"""

import json
import os
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = []

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
K8S_BASE_DIR = K8S_DIR / "base"
K8S_COMPONENTS_DIR = K8S_DIR / "components"
K8S_OVERLAYS_DIR = K8S_DIR / "overlays"
K8S_OVERLAYS = ["dev", "production"]
INGRESS_TLS_DIR = K8S_COMPONENTS_DIR / "ingress-tls"
NGINX_DIR = ROOT / "deploy" / "nginx"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
VENV_BIN = Path(sys.executable).parent
KUBERNETES_VALIDATE = str(VENV_BIN / "kubernetes-validate")
SHARED_MEMORY_DIR = "/dev/shm"  # noqa: S108 (gunicorn's heartbeat directory, not a temp file)

K8S_MANIFESTS = sorted(p for p in K8S_BASE_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
# The kustomize Components under deploy/k8s/components/ (PgBouncer, the Ingress with TLS): their
# resources and patches. The overlays' patches are partial objects, checked once rendered.
K8S_COMPONENT_MANIFESTS = sorted(
    p for p in K8S_COMPONENTS_DIR.glob("*/*.yaml") if p.name != "kustomization.yaml"
)
# An example the base leaves out on purpose (its header says why and how to use it).
K8S_OPTIONAL = {"prometheus-scrape.yaml"}
# The oldest Kubernetes still commonly offered by managed clusters, and the newest the installed
# kubernetes-validate knows.
K8S_VERSIONS = ["1.30.0", "1.37.0"]


def run(args, **kwargs):
    """Run a validator; a failure shows its own output."""
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)


def require_binary(name: str) -> str:
    path = shutil.which(name) or (str(VENV_BIN / name) if (VENV_BIN / name).exists() else None)
    if path is None:
        pytest.skip(f"`{name}` is not installed, so this file cannot be checked here")
    return path


def load_manifest(name: str, directory: Path = K8S_BASE_DIR) -> dict:
    return yaml.safe_load((directory / name).read_text())


def load_manifests(name: str, directory: Path = K8S_BASE_DIR) -> list[dict]:
    """Every object of a file that may hold several (networkpolicy.yaml)."""
    return [doc for doc in yaml.safe_load_all((directory / name).read_text()) if doc]


def render_kustomization(directory: Path, tmp_path: Path) -> list[dict]:
    """`kubectl kustomize`, the result checked by kubernetes-validate --strict on every version."""
    kubectl = require_binary("kubectl")
    result = run([kubectl, "kustomize", str(directory)])
    assert result.returncode == 0, result.stderr
    output = tmp_path / "rendered.yaml"
    output.write_text(result.stdout)
    for version in K8S_VERSIONS:
        validated = run([KUBERNETES_VALIDATE, "--strict", "-k", version, str(output)])
        assert validated.returncode == 0, validated.stdout + validated.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind_and_name(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def all_containers(doc: dict) -> list[dict]:
    """A workload's containers, init containers included."""
    pod = doc["spec"]["template"]["spec"]
    return pod.get("initContainers", []) + pod["containers"]


def millicores(cpu: str) -> int:
    return int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)


WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def only_container(manifest: dict) -> dict:
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return container


def container_env(container: dict) -> dict:
    return {item["name"]: item["value"] for item in container["env"]}


def pod_storage(manifest: dict) -> tuple[dict, dict]:
    """The single container's mounts (path → volume name) and the pod's volumes by name."""
    pod = manifest["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in only_container(manifest)["volumeMounts"]}
    return mounts, {volume["name"]: volume for volume in pod["volumes"]}


def render_nginx_template(**values: str) -> str:
    template = (NGINX_DIR / "todo-scale.conf.template").read_text()
    return string.Template(template).safe_substitute(values)


def render_stack_nginx() -> str:
    return render_nginx_template(
        NGINX_PORT="8000", UPSTREAM_SERVERS="server 127.0.0.1:8101 max_conns=12;"
    )


def named_location(config_text: str, name: str) -> str:
    """The body of `location @name { ... }`: up to its closing brace, skipping quoted strings
    (a JSON body in a `return`) and comments."""
    start = config_text.index(f"location @{name} {{") + len(f"location @{name} {{")
    depth, quote, comment = 1, None, False
    for index in range(start, len(config_text)):
        char = config_text[index]
        if comment:
            comment = char != "\n"
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#":
            comment = True
        elif char in "{}":
            depth += 1 if char == "{" else -1
            if depth == 0:
                return config_text[start:index]
    raise AssertionError(f"location @{name} is not closed")


def without_comments(text: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def nginx_test(config_text: str, prefix: Path):
    """`nginx -t` from a scratch prefix, which relative paths (pid, logs, temp dirs) resolve to."""
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(config_text)
    nginx = require_binary("nginx")
    return run([nginx, "-t", "-p", f"{prefix}/", "-c", "nginx.conf", "-e", "stderr"])


def proxy_directives(config_text: str) -> list[str]:
    """How requests are passed on; temp paths differ by design (the stack keeps its own)."""
    lines = (line.strip() for line in config_text.splitlines())
    wanted = ("proxy_", "client_max_body_size")
    return sorted(
        line for line in lines if line.startswith(wanted) and not line.startswith("proxy_temp_path")
    )


# Kubernetes


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    "manifest",
    K8S_MANIFESTS + K8S_COMPONENT_MANIFESTS,
    ids=lambda p: p.relative_to(K8S_DIR).as_posix(),
)
def test_k8s_manifest_passes_strict_schema_validation(manifest, version):
    result = run([KUBERNETES_VALIDATE, "--strict", "-k", version, str(manifest)])

    assert result.returncode == 0, result.stdout + result.stderr


def test_strict_validation_rejects_a_misspelt_field(tmp_path):
    # The check above is only worth something if a typo fails it.
    deployment = load_manifest("beat-deployment.yaml")
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(deployment))

    result = run([KUBERNETES_VALIDATE, "--strict", "-k", K8S_VERSIONS[0], str(typo)])

    assert result.returncode != 0


def test_base_kustomization_renders_every_manifest_and_the_result_validates(tmp_path):
    rendered = render_kustomization(K8S_BASE_DIR, tmp_path)

    listed = load_manifest("kustomization.yaml")["resources"]
    assert {path.name for path in K8S_MANIFESTS} == set(listed) | K8S_OPTIONAL
    sources = [doc for name in listed for doc in load_manifests(name)]
    assert sorted(by_kind_and_name(rendered)) == sorted(by_kind_and_name(sources))


@pytest.mark.parametrize("overlay", K8S_OVERLAYS)
def test_overlay_renders_and_passes_strict_validation(overlay, tmp_path):
    rendered = render_kustomization(K8S_OVERLAYS_DIR / overlay, tmp_path)

    docs = by_kind_and_name(rendered)
    assert ("Deployment", "todo-web") in docs
    # Every object is todo-scale's, labelled as the base labels them.
    assert all(
        doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "todo-scale" for doc in rendered
    )


def test_production_sets_resources_on_every_container_and_the_hpa_bounds(tmp_path):
    rendered = render_kustomization(K8S_OVERLAYS_DIR / "production", tmp_path)
    docs = by_kind_and_name(rendered)
    workloads = [doc for doc in rendered if doc["kind"] in WORKLOAD_KINDS]

    assert {name for kind, name in docs if kind == "Deployment"} == {
        "todo-web",
        "todo-worker",
        "todo-beat",
        "todo-outbox-relay",
        "pgbouncer",
    }
    for workload in workloads:
        for container in all_containers(workload):
            resources = container.get("resources", {})
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert set(resources.get("requests", {})) == {"cpu", "memory"}, where
            assert set(resources.get("limits", {})) == {"cpu", "memory"}, where
    hpa = docs[("HorizontalPodAutoscaler", "todo-web")]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "todo-web"
    # PgBouncer is on, and the Ingress with TLS is the way in.
    assert (
        docs[("ConfigMap", "todo-scale-config")]["data"]["DATABASE_TRANSACTION_POOLING"] == "true"
    )
    assert ("Ingress", "todo-web") in docs
    assert docs[("Service", "todo-web")]["spec"]["type"] == "ClusterIP"
    assert "externalTrafficPolicy" not in docs[("Service", "todo-web")]["spec"]
    config = docs[("ConfigMap", "todo-scale-config")]["data"]
    assert config["DJANGO_TRUST_PROXY_HEADERS"] == config["DJANGO_SECURE_SSL_REDIRECT"] == "true"


def test_dev_is_one_small_web_pod_without_pgbouncer(tmp_path):
    rendered = render_kustomization(K8S_OVERLAYS_DIR / "dev", tmp_path)
    docs = by_kind_and_name(rendered)
    web = docs[("Deployment", "todo-web")]
    hpa = docs[("HorizontalPodAutoscaler", "todo-web")]
    production = load_manifests("resources-patch.yaml", K8S_OVERLAYS_DIR / "production")[0]

    assert web["spec"]["replicas"] == 1
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 2)
    assert not any(name.startswith("pgbouncer") for _, name in docs)
    assert "DATABASE_TRANSACTION_POOLING" not in docs[("ConfigMap", "todo-scale-config")]["data"]
    assert ("Ingress", "todo-web") not in docs
    assert docs[("Service", "todo-web")]["spec"]["type"] == "ClusterIP"
    assert production["metadata"]["name"] == "todo-web"
    web_resources = only_container(web)["resources"]
    production_web = production["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert millicores(web_resources["requests"]["cpu"]) < millicores(
        production_web["requests"]["cpu"]
    )
    for workload in (doc for doc in rendered if doc["kind"] in WORKLOAD_KINDS):
        for container in all_containers(workload):
            assert container["resources"]["limits"], container["name"]


def network_policies(docs: dict) -> dict[str, dict]:
    return {name: doc["spec"] for (kind, name), doc in docs.items() if kind == "NetworkPolicy"}


@pytest.mark.parametrize("overlay", K8S_OVERLAYS)
def test_network_policies_admit_the_ingress_controller_and_prometheus_only(overlay, tmp_path):
    docs = by_kind_and_name(render_kustomization(K8S_OVERLAYS_DIR / overlay, tmp_path))
    policies = network_policies(docs)
    web_labels = docs[("Deployment", "todo-web")]["spec"]["template"]["metadata"]["labels"]

    assert {"todo-scale-default", "todo-web-ingress", "todo-metrics-ingress"} <= set(policies)
    default = policies["todo-scale-default"]
    # Every todo-scale pod: no ingress but what another policy allows, egress to the stores only.
    assert default["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "todo-scale"}}
    assert default["policyTypes"] == ["Ingress", "Egress"]
    assert default["ingress"] == []
    egress_ports = {(p["protocol"], p["port"]) for rule in default["egress"] for p in rule["ports"]}
    assert egress_ports == {
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 5432),
        ("TCP", 6432),
        ("TCP", 6379),
        ("TCP", 5672),
    }
    web = policies["todo-web-ingress"]
    assert web["podSelector"]["matchLabels"].items() <= web_labels.items()
    (rule,) = web["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    namespaces = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in rule["from"]
    }
    assert namespaces == {"ingress-nginx", "monitoring"}
    # Workers and relays accept Prometheus on their metrics port, nothing else.
    (metrics_rule,) = policies["todo-metrics-ingress"]["ingress"]
    assert metrics_rule["ports"] == [{"protocol": "TCP", "port": "metrics"}]
    assert [p["namespaceSelector"]["matchLabels"] for p in metrics_rule["from"]] == [
        {"kubernetes.io/metadata.name": "monitoring"}
    ]
    if overlay == "production":
        assert (
            policies["pgbouncer-ingress"]["podSelector"]["matchLabels"][
                "app.kubernetes.io/component"
            ]
            == "pgbouncer"
        )


def overlay_image_tag(overlay: Path) -> str:
    (image,) = yaml.safe_load((overlay / "kustomization.yaml").read_text())["images"]
    return image["newTag"]


@pytest.mark.parametrize("overlay", K8S_OVERLAYS)
def test_the_migration_job_is_named_after_the_release(overlay, tmp_path):
    docs = by_kind_and_name(render_kustomization(K8S_OVERLAYS_DIR / overlay, tmp_path))
    tag = overlay_image_tag(K8S_OVERLAYS_DIR / overlay)
    (job,) = [doc for (kind, _), doc in docs.items() if kind == "Job"]

    assert job["metadata"]["name"] == f"todo-migrate-{tag}"
    assert only_container(job)["image"].endswith(f":{tag}")
    # Every pod of the release runs the Job's image.
    images = {
        container["image"]
        for doc in docs.values()
        if doc["kind"] in WORKLOAD_KINDS and doc["metadata"]["name"] != "pgbouncer"
        for container in all_containers(doc)
    }
    assert images == {only_container(job)["image"]}


def test_a_new_image_tag_renames_the_migration_job(tmp_path):
    # As `kustomize edit set image` would leave it: only the tag in the overlay changes.
    tree = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, tree)
    kustomization = tree / "overlays" / "production" / "kustomization.yaml"
    old_tag = overlay_image_tag(kustomization.parent)
    text = kustomization.read_text()
    kustomization.write_text(text.replace(f'newTag: "{old_tag}"', 'newTag: "2031.12.3"'))

    docs = by_kind_and_name(render_kustomization(kustomization.parent, tmp_path))

    assert ("Job", "todo-migrate-2031.12.3") in docs


def test_the_release_sequences_first_apply_holds_the_job_and_not_the_app(tmp_path):
    # docs/deploying.md: `kubectl apply -k ... -l 'app.kubernetes.io/component notin (...)'`
    # applies the configuration, PgBouncer and the Job; the app's Deployments come after the wait.
    deploying = (ROOT / "docs" / "deploying.md").read_text()
    match = re.search(r"-l '(app\.kubernetes\.io/component) notin \(([a-z,-]+)\)'", deploying)
    assert match, "the release sequence's selector is in docs/deploying.md"
    key, excluded = match.group(1), set(match.group(2).split(","))
    docs = render_kustomization(K8S_OVERLAYS_DIR / "production", tmp_path)

    first = {
        (doc["kind"], doc["metadata"]["name"])
        for doc in docs
        if doc["metadata"].get("labels", {}).get(key) not in excluded
    }

    assert any(kind == "Job" for kind, _ in first)
    assert ("ConfigMap", "todo-scale-config") in first
    assert ("Secret", "todo-scale-secrets") in first
    assert ("Deployment", "pgbouncer") in first
    for name in ("todo-web", "todo-worker", "todo-beat", "todo-outbox-relay"):
        assert ("Deployment", name) not in first


def test_ingress_terminates_tls_for_the_allowed_host_and_proxies_like_nginx():
    ingress = load_manifest("ingress.yaml", INGRESS_TLS_DIR)
    service = load_manifest("web-service.yaml")
    allowed_hosts = load_manifest("configmap.yaml")["data"]["DJANGO_ALLOWED_HOSTS"].split(",")
    annotations = ingress["metadata"]["annotations"]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    (tls,) = ingress["spec"]["tls"]

    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert tls["hosts"] == [rule["host"]]
    assert rule["host"] in allowed_hosts
    assert tls["secretName"]
    assert path["backend"]["service"] == {
        "name": service["metadata"]["name"],
        "port": {"name": service["spec"]["ports"][0]["name"]},
    }
    prefix = "nginx.ingress.kubernetes.io/"
    # cert-manager issues the certificate into the Secret spec.tls names.
    assert annotations["cert-manager.io/cluster-issuer"]
    assert annotations[prefix + "force-ssl-redirect"] == "true"
    assert annotations[prefix + "proxy-body-size"] == "1m"
    assert annotations[prefix + "proxy-next-upstream"] == "error timeout http_502 http_503"
    assert annotations[prefix + "proxy-next-upstream-tries"] == "2"
    assert int(annotations[prefix + "proxy-read-timeout"]) > gunicorn_settings({})["timeout"]
    # Snippets are off by default in ingress-nginx (they can read the controller's secrets).
    assert not any("snippet" in key for key in annotations)


def test_prometheus_scrape_config_is_valid_and_sends_the_metrics_token(tmp_path):
    promtool = require_binary("promtool")
    config = yaml.safe_load(load_manifest("prometheus-scrape.yaml")["data"]["prometheus.yml"])
    (job,) = config["scrape_configs"]
    token_file = job["authorization"]["credentials_file"]
    relabel = {
        tuple(rule["source_labels"]): rule
        for rule in job["relabel_configs"]
        if rule.get("action") == "keep"
    }

    assert job["authorization"]["type"] == "Bearer"
    assert [sd["role"] for sd in job["kubernetes_sd_configs"]] == ["pod"]
    # The token goes to todo-scale's annotated pods only.
    assert relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]["regex"] == "todo-scale"
    assert relabel[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)]["regex"] == "true"

    # promtool checks that the token file exists: point it at one. Debian's Prometheus is built
    # without Kubernetes discovery, so there the discovery block is swapped for a static target;
    # everything else (authorization, relabelling) is checked as written.
    (tmp_path / "token").write_text("placeholder")
    job["authorization"]["credentials_file"] = str(tmp_path / "token")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run([promtool, "check", "config", str(path)])
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        job["static_configs"] = [{"targets": ["10.0.0.1:8000"]}]
        del job["kubernetes_sd_configs"]
        path.write_text(yaml.safe_dump(config))
        result = run([promtool, "check", "config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert token_file.startswith("/etc/prometheus/")


def test_web_deployment_has_the_tutorials_size_and_resources():
    web = load_manifest("web-deployment.yaml")
    container = only_container(web)

    assert web["spec"]["replicas"] == 5
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    assert container["image"] == "todo-scale:latest"


def test_web_probes_use_the_health_endpoints():
    container = only_container(load_manifest("web-deployment.yaml"))

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert {
        probe["httpGet"]["port"]
        for probe in (
            container["readinessProbe"],
            container["livenessProbe"],
            container["startupProbe"],
        )
    } == {"http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]


def test_web_rolls_out_without_losing_capacity_or_requests():
    web = load_manifest("web-deployment.yaml")
    pod = web["spec"]["template"]["spec"]
    container = only_container(web)

    assert web["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
    }
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    # The pod must outlive the preStop sleep plus gunicorn's graceful shutdown.
    assert pod["terminationGracePeriodSeconds"] >= 5 + gunicorn_settings({})["graceful_timeout"]


def test_web_runs_as_non_root_on_a_read_only_filesystem_with_writable_scratch_dirs():
    web = load_manifest("web-deployment.yaml")
    pod = web["spec"]["template"]["spec"]
    container = only_container(web)
    env = container_env(container)
    mounts, volumes = pod_storage(web)

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 (a mount path, not a temp file)
    assert "emptyDir" in volumes[mounts[env["PROMETHEUS_MULTIPROC_DIR"]]]
    assert web["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics",
    }


def test_web_pods_write_an_access_log():
    # No nginx in front in Kubernetes: gunicorn's access log is the only one.
    env = container_env(only_container(load_manifest("web-deployment.yaml")))

    assert env["GUNICORN_ACCESS_LOG"] == "true"
    assert (
        gunicorn_settings({"GUNICORN_ACCESS_LOG": env["GUNICORN_ACCESS_LOG"]})["accesslog"] == "-"
    )


def test_service_is_a_load_balancer_from_80_to_the_web_port():
    service = load_manifest("web-service.yaml")
    web = load_manifest("web-deployment.yaml")

    assert service["spec"]["type"] == "LoadBalancer"
    # Per-IP rate limits need the client's address, not a node's.
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]


def test_hpa_scales_web_between_3_and_20_at_half_cpu():
    hpa = load_manifest("web-hpa.yaml")

    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "todo-web",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 50}


def test_pdb_covers_the_web_pods():
    pdb = load_manifest("web-pdb.yaml")
    web = load_manifest("web-deployment.yaml")

    assert pdb["spec"]["selector"]["matchLabels"] == web["spec"]["selector"]["matchLabels"]
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 2


def test_exactly_one_beat_and_a_rollout_never_runs_two():
    beat = load_manifest("beat-deployment.yaml")

    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert only_container(beat)["command"][:4] == ["celery", "-A", "config", "beat"]


def test_worker_has_time_to_finish_acks_late_tasks():
    worker = load_manifest("worker-deployment.yaml")

    assert only_container(worker)["command"][:4] == ["celery", "-A", "config", "worker"]
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 120


def scrape_annotations(port: int) -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }


def test_worker_pods_serve_their_task_metrics_from_a_multiprocess_dir_on_an_empty_dir():
    worker = load_manifest("worker-deployment.yaml")
    container = only_container(worker)
    env = container_env(container)
    mounts, volumes = pod_storage(worker)

    assert worker["spec"]["template"]["metadata"]["annotations"] == scrape_annotations(9808)
    assert container["ports"] == [{"name": "metrics", "containerPort": 9808}]
    assert env["CELERY_METRICS_PORT"] == "9808"
    assert "emptyDir" in volumes[mounts[env["PROMETHEUS_MULTIPROC_DIR"]]]


def test_relay_pods_serve_the_outbox_backlog():
    relay = load_manifest("outbox-relay-deployment.yaml")
    container = only_container(relay)
    env = container_env(container)

    assert container["command"] == ["python", "manage.py", "outbox_relay"]
    assert relay["spec"]["template"]["metadata"]["annotations"] == scrape_annotations(9809)
    assert container["ports"] == [{"name": "metrics", "containerPort": 9809}]
    assert env["OUTBOX_METRICS_PORT"] == "9809"


def test_migration_job_runs_migrate_and_cleans_up_after_itself():
    job = load_manifest("migrate-job.yaml")

    assert only_container(job)["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}


def test_secret_holds_only_placeholders():
    secret = load_manifest("secret.yaml")

    assert secret["stringData"]
    assert all("replace-me" in value for value in secret["stringData"].values())


# docker-compose


def compose_config() -> dict:
    docker_compose = require_binary("docker-compose")
    result = run(
        [docker_compose, "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        env={**os.environ, "PORT": ""},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_valid():
    docker_compose = require_binary("docker-compose")

    result = run([docker_compose, "-f", "docker-compose.yml", "config", "-q"], cwd=ROOT)

    assert result.returncode == 0, result.stderr


def test_compose_runs_the_scaled_topology():
    services = compose_config()["services"]

    assert set(services) >= {
        "db",
        "db-replica",
        "redis",
        "rabbitmq",
        "migrate",
        "web",
        "nginx",
        "worker",
        "beat",
        "prometheus",
    }
    assert services["web"]["deploy"]["replicas"] == 3
    assert "deploy" not in services["beat"]
    assert "scale" not in services["beat"]
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert services["nginx"]["ports"][0]["published"] == 8000
    assert services["nginx"]["ports"][0]["target"] == 80


def test_compose_wires_every_service_to_its_backing_store():
    env = compose_config()["services"]["web"]["environment"]

    assert env["DATABASE_URL"] == "postgres://todo:todo@db:5432/todo"
    assert env["DATABASE_REPLICA_URLS"] == "postgres://todo:todo@db-replica:5432/todo"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["CELERY_BROKER_URL"] == "amqp://guest:guest@rabbitmq:5672//"
    assert env["CELERY_RESULT_BACKEND"] == "redis://redis:6379/1"


def test_compose_worker_and_relay_serve_metrics_on_the_compose_network_only():
    services = compose_config()["services"]
    worker, relay = services["worker"], services["outbox-relay"]

    assert worker["environment"]["CELERY_METRICS_PORT"] == "9808"
    assert relay["environment"]["OUTBOX_METRICS_PORT"] == "9809"
    # The rest of the shared environment is still there.
    assert worker["environment"]["DATABASE_URL"] == services["web"]["environment"]["DATABASE_URL"]
    assert relay["environment"]["CELERY_BROKER_URL"] == "amqp://guest:guest@rabbitmq:5672//"
    assert (worker["expose"], relay["expose"]) == (["9808"], ["9809"])
    assert "ports" not in worker
    assert "ports" not in relay


# nginx


def test_stack_nginx_template_renders_to_a_valid_config(tmp_path):
    config = render_nginx_template(
        NGINX_PORT="18000",
        UPSTREAM_SERVERS=(
            "server 127.0.0.1:18101 max_conns=12; server 127.0.0.1:18102 max_conns=12;"
        ),
    )

    result = nginx_test(config, tmp_path / "stack")

    assert "${" not in config
    assert result.returncode == 0, result.stderr


def test_stack_nginx_template_renders_the_same_with_envsubst(tmp_path):
    envsubst = require_binary("envsubst")
    values = {"NGINX_PORT": "18000", "UPSTREAM_SERVERS": "server 127.0.0.1:18101 max_conns=12;"}

    result = run(
        [envsubst, "${NGINX_PORT} ${UPSTREAM_SERVERS}"],
        input=(NGINX_DIR / "todo-scale.conf.template").read_text(),
        env={**os.environ, **values},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == render_nginx_template(**values)


def test_compose_nginx_config_is_valid(tmp_path):
    # nginx -t resolves upstream host names, and `web` exists only on the compose network: the
    # one server line is pointed at loopback for the check, nothing else is changed.
    original = (NGINX_DIR / "nginx.conf").read_text()
    config = original.replace("server web:8000 ", "server 127.0.0.1:8000 ")
    assert config != original

    result = nginx_test(config, tmp_path / "compose")

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "config_text",
    [
        pytest.param((NGINX_DIR / "nginx.conf").read_text(), id="compose"),
        pytest.param(render_stack_nginx(), id="stack"),
    ],
)
def test_nginx_balances_least_connections_and_caps_bodies_at_1m(config_text):
    upstream = re.search(r"upstream todo_web \{(.*?)\}", config_text, re.S).group(1)
    directives = proxy_directives(config_text)

    assert "least_conn;" in upstream
    assert re.search(r"^\s*keepalive \d+;", upstream, re.M)
    assert "client_max_body_size 1m;" in directives
    assert "proxy_pass http://todo_web;" in directives
    assert "proxy_http_version 1.1;" in directives
    assert 'proxy_set_header Connection "";' in directives
    assert "proxy_next_upstream error timeout http_502 http_503;" in directives
    assert "proxy_next_upstream_tries 2;" in directives
    for header in ("Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"):
        assert any(d.startswith(f"proxy_set_header {header} ") for d in directives), header
    # The client's request id passes through; nginx makes one only when none was sent.
    assert "proxy_set_header X-Request-ID $forwarded_request_id;" in directives
    assert re.search(
        r'map \$http_x_request_id \$forwarded_request_id \{\s*""\s+\$request_id;', config_text
    )
    assert "location = /nginx-health" in config_text


def test_compose_and_stack_nginx_proxy_alike():
    compose = proxy_directives((NGINX_DIR / "nginx.conf").read_text())
    stack = proxy_directives(render_stack_nginx())

    assert compose == stack


def test_rendered_stack_nginx_bounds_every_replica_by_its_workers_and_threads(tmp_path):
    from deploy import capacity
    from deploy.local.nginx import render_template

    max_conns = capacity.upstream_max_conns(2)
    config = render_template(18000, [(18101, False), (18102, True)], max_conns)

    upstream = re.search(r"upstream todo_web \{(.*?)\}", config, re.S).group(1)
    assert "server 127.0.0.1:18101 max_conns=12;" in upstream
    assert "server 127.0.0.1:18102 max_conns=12 down;" in upstream
    # 2 workers x 4 threads running, and half as many waiting.
    assert (capacity.THREADS, max_conns) == (4, 12)
    assert nginx_test(config, tmp_path / "stack").returncode == 0


def test_compose_nginx_bound_is_the_one_for_composes_web_concurrency():
    from deploy import capacity

    # The default docker-compose.yml gives the web service (the variable's value of the moment
    # would make this depend on the shell it runs in).
    web = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]
    setting = web["environment"]["WEB_CONCURRENCY"]
    workers = int(re.fullmatch(r"\$\{WEB_CONCURRENCY:-(\d+)\}", setting).group(1))
    upstream = re.search(
        r"upstream todo_web \{(.*?)\}", (NGINX_DIR / "nginx.conf").read_text(), re.S
    ).group(1)

    assert f"server web:8000 max_conns={capacity.upstream_max_conns(workers)};" in upstream


@pytest.mark.parametrize(
    "config_text",
    [
        pytest.param((NGINX_DIR / "nginx.conf").read_text(), id="compose"),
        pytest.param(render_stack_nginx(), id="stack"),
    ],
)
def test_nginx_sheds_what_no_replica_can_take_with_a_503_and_retry_after(config_text):
    upstream = re.search(r"upstream todo_web \{(.*?)\}", config_text, re.S).group(1)
    unavailable = without_comments(named_location(config_text, "unavailable"))
    timeout = without_comments(named_location(config_text, "upstream_timeout"))

    # One count per replica for every nginx worker, and a bound on every server.
    assert re.search(r"^\s*zone todo_web \d+k;", upstream, re.M)
    servers = re.findall(r"^\s*server (.*);", upstream, re.M)
    assert servers
    assert all(re.search(r" max_conns=\d+\b", server) for server in servers)
    # `=`: the status is the named location's, not nginx's original 502.
    assert "error_page 502 503 = @unavailable;" in config_text
    assert "error_page 504 = @upstream_timeout;" in config_text
    assert "add_header Retry-After 1 always;" in unavailable
    assert any(line.startswith('return 503 \'{"detail": ') for line in unavailable)
    # A replica that was tried and failed stays a 502, told apart in the access log.
    assert "if ($unavailable_reason = upstream_error) {" in unavailable
    assert any(line.startswith('return 502 \'{"detail": ') for line in unavailable)
    assert any(re.fullmatch(r"access_log \S+ unavailable;", line) for line in unavailable)
    assert any(line.startswith('return 504 \'{"detail": ') for line in timeout)
    assert re.search(
        r'map \$upstream_addr \$unavailable_reason \{\s*"~:"\s+upstream_error;', config_text
    )
    # POSTs stay unretried once sent.
    assert "non_idempotent" not in " ".join(without_comments(config_text))


def test_compose_and_stack_nginx_shed_alike():
    compose = (NGINX_DIR / "nginx.conf").read_text()
    stack = render_stack_nginx()

    for name in ("unavailable", "upstream_timeout"):
        # The log goes to stdout in a container and to a file of the prefix on the box.
        lines = [
            [
                line
                for line in without_comments(named_location(text, name))
                if "access_log" not in line
            ]
            for text in (compose, stack)
        ]
        assert lines[0] == lines[1], name
    # The same reasons, and the same access log line.
    for pattern in (
        r"map \$upstream_addr \$unavailable_reason \{.*?\}",
        r"log_format unavailable .*?;\n",
    ):
        assert re.search(pattern, compose, re.S).group() == re.search(pattern, stack, re.S).group()


def test_nginx_read_timeout_outlasts_gunicorns_worker_timeout():
    config_text = (NGINX_DIR / "nginx.conf").read_text()
    timeout = re.search(r"proxy_read_timeout (\d+)s;", config_text).group(1)

    assert int(timeout) > gunicorn_settings({})["timeout"]


# Prometheus


def test_compose_prometheus_config_is_valid_and_scrapes_each_replica_worker_and_relay():
    promtool = require_binary("promtool")
    path = PROMETHEUS_DIR / "prometheus.yml"

    result = run([promtool, "check", "config", str(path)])

    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"]: job for job in yaml.safe_load(path.read_text())["scrape_configs"]}
    for job, service, port in [
        ("web", "web", 8000),
        ("worker", "worker", 9808),
        ("outbox-relay", "outbox-relay", 9809),
    ]:
        assert jobs[job]["dns_sd_configs"] == [
            {"names": [service], "type": "A", "port": port, "refresh_interval": "15s"}
        ]


def test_stack_prometheus_template_renders_to_a_valid_config(tmp_path):
    promtool = require_binary("promtool")
    template = (PROMETHEUS_DIR / "prometheus.local.yml.template").read_text()
    rendered = string.Template(template).safe_substitute(
        TARGETS='"127.0.0.1:8101", "127.0.0.1:8102"',
        WORKER_TARGET='"127.0.0.1:9808"',
        RELAY_TARGET='"127.0.0.1:9809"',
        RULES=str(PROMETHEUS_DIR / "alerts.yml"),
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(rendered)

    result = run([promtool, "check", "config", str(path)])

    assert result.returncode == 0, result.stdout + result.stderr
    assert "${" not in rendered
    jobs = {job["job_name"]: job for job in yaml.safe_load(rendered)["scrape_configs"]}
    assert {name: job["static_configs"] for name, job in jobs.items()} == {
        "web": [{"targets": ["127.0.0.1:8101", "127.0.0.1:8102"]}],
        "worker": [{"targets": ["127.0.0.1:9808"]}],
        "outbox-relay": [{"targets": ["127.0.0.1:9809"]}],
    }


# Dockerfile


def test_dockerfile_passes_hadolint_with_no_rule_ignored():
    # Every rule, down to style, and no way to switch one off: no inline `hadolint ignore=`, no
    # config file in the repository, none of hadolint's variables from this environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    result = run(
        [str(VENV_BIN / "hadolint"), "--failure-threshold", "style", "Dockerfile"],
        cwd=ROOT,
        env=env,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert not re.search(r"hadolint\s+(global\s+)?ignore", (ROOT / "Dockerfile").read_text())
    assert not list(ROOT.glob(".hadolint.y*ml"))


def test_image_installs_runtime_requirements_only_and_runs_gunicorn_as_non_root():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    dockerfile = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    final_stage = dockerfile[dockerfile.rindex("\nFROM ") :]

    assert "requirements-dev.txt" not in dockerfile
    assert "FROM python:3.11-slim\n" in final_stage
    assert re.search(r"^USER 10001", final_stage, re.M)
    assert "collectstatic --noinput" in final_stage
    command = '["gunicorn", "-c", "deploy/gunicorn.conf.py", "config.wsgi:application"]'
    assert f"CMD {command}" in final_stage
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "*.sqlite3", "staticfiles", "bench/results"} <= set(ignored)


# gunicorn


GUNICORN_SETTINGS = [
    "bind",
    "workers",
    "worker_class",
    "threads",
    "max_requests",
    "max_requests_jitter",
    "timeout",
    "graceful_timeout",
    "keepalive",
    "preload_app",
    "worker_tmp_dir",
    "accesslog",
    "backlog",
]


def gunicorn_settings(env: dict[str, str]) -> dict:
    """Execute the config file as gunicorn does, in a child process so its environment changes
    stay there; returns the settings and the resulting PROMETHEUS_MULTIPROC_DIR."""
    script = (
        "import json, os, runpy, sys\n"
        "ns = runpy.run_path(sys.argv[1])\n"
        f"keys = {GUNICORN_SETTINGS!r}\n"
        "out = {k: ns.get(k) for k in keys}\n"
        "out['multiproc_dir'] = os.environ.get('PROMETHEUS_MULTIPROC_DIR')\n"
        "print(json.dumps(out))\n"
    )
    unset = {"PORT", "WEB_CONCURRENCY", "GUNICORN_ACCESS_LOG"}
    base = {k: v for k, v in os.environ.items() if k not in unset}
    base.setdefault("PROMETHEUS_MULTIPROC_DIR", "/nonexistent-metrics-dir-for-settings-only")
    result = run([sys.executable, "-c", script, str(GUNICORN_CONF)], env={**base, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_gunicorn_reads_port_and_concurrency_from_the_environment():
    settings = gunicorn_settings({"PORT": "9123", "WEB_CONCURRENCY": "3"})

    assert settings["bind"] == "0.0.0.0:9123"
    assert settings["workers"] == 3
    assert (settings["worker_class"], settings["threads"]) == (
        "deploy.balanced_worker.BalancedThreadWorker",
        4,
    )
    assert (settings["max_requests"], settings["max_requests_jitter"]) == (2_000_000, 200_000)
    assert (settings["timeout"], settings["graceful_timeout"], settings["keepalive"]) == (30, 30, 5)
    assert settings["preload_app"] is False
    assert settings["accesslog"] is None
    # Twice what nginx lets 3 workers x 4 threads hold (18): nothing nginx sends waits for room.
    assert settings["backlog"] == 64


def test_gunicorn_defaults_to_port_8000_and_one_worker_per_core():
    settings = gunicorn_settings({})

    assert settings["bind"] == "0.0.0.0:8000"
    assert 1 <= settings["workers"] <= len(os.sched_getaffinity(0))


def test_gunicorn_access_log_goes_to_stdout_when_asked():
    assert gunicorn_settings({"GUNICORN_ACCESS_LOG": "true"})["accesslog"] == "-"


def test_gunicorn_heartbeat_lives_in_shared_memory_when_there_is_some():
    if not os.access(SHARED_MEMORY_DIR, os.W_OK):
        pytest.skip(f"{SHARED_MEMORY_DIR} is not writable on this machine")

    assert gunicorn_settings({})["worker_tmp_dir"] == SHARED_MEMORY_DIR


def test_gunicorn_keeps_a_given_metrics_dir(tmp_path):
    settings = gunicorn_settings({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})

    assert settings["multiproc_dir"] == str(tmp_path)


def test_gunicorn_metrics_hooks_reset_the_dir_and_forget_dead_workers(tmp_path):
    # given a metrics dir without a value, which the config creates and owns
    script = (
        "import os, runpy, sys, types\n"
        "os.environ.pop('PROMETHEUS_MULTIPROC_DIR', None)\n"
        "ns = runpy.run_path(sys.argv[1])\n"
        "d = os.environ['PROMETHEUS_MULTIPROC_DIR']\n"
        "assert os.path.isdir(d), d\n"
        "for name in ('counter_1.db', 'gauge_livesum_1.db'):\n"
        "    open(os.path.join(d, name), 'w').close()\n"
        "ns['on_starting'](None)\n"
        "assert os.listdir(d) == [], os.listdir(d)\n"
        "for name in ('counter_42.db', 'gauge_livesum_42.db'):\n"
        "    open(os.path.join(d, name), 'w').close()\n"
        "ns['child_exit'](None, types.SimpleNamespace(pid=42))\n"
        "assert os.listdir(d) == ['counter_42.db'], os.listdir(d)\n"
        "ns['on_exit'](None)\n"
        "assert not os.path.exists(d), d\n"
    )
    # when the hooks run as gunicorn's master would run them
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = run([sys.executable, "-c", script, str(GUNICORN_CONF)], env=env)

    # then stale files went at start, a dead worker's live gauge went, its counter stayed
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []
