"""The README's "Configuration" table names every environment variable the code reads, each
with its default, so an operator has one place to look."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where the project reads its environment: the apps, the deploy launchers, the benchmarks.
SOURCES = ("config", "todos", "tasks", "deploy", "bench")
# `os.environ["X"]`, `os.environ.get("X")`, `os.getenv("X")`, `env("X")`, `env.int("X", ...)`.
READ = re.compile(
    r"""(?:os\.environ(?:\.get)?\s*[\[(]|os\.getenv\(|\benv(?:\.[a-z_]+)?\()\s*["']([A-Z][A-Z0-9_]*)["']"""
)
# The system's own, passed through to child processes, not settings of this project.
NOT_SETTINGS = {"PATH"}


def variables_read() -> set[str]:
    found = set()
    for source in SOURCES:
        for path in (ROOT / source).rglob("*.py"):
            found |= set(READ.findall(path.read_text()))
    return found - NOT_SETTINGS


def configuration_table() -> dict[str, str]:
    """Each variable of the README's "Configuration" table, with its default (the last column)."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Configuration\n")
    section = readme[start : readme.index("\n## ", start + 1)]
    rows = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0]):
            rows[name] = cells[-1]
    return rows


def test_the_code_reads_variables_and_the_search_finds_them():
    found = variables_read()
    assert {"DATABASE_URL", "REDIS_URL", "API_TOKEN_TTL", "GUNICORN_CONTROL_SOCKET"} <= found


def test_every_variable_read_is_in_the_configuration_table_with_a_default():
    table = configuration_table()

    missing = sorted(variables_read() - table.keys())
    assert not missing, f"README 'Configuration' has no row for {missing}"
    assert all(table.values()), [name for name, default in table.items() if not default]
