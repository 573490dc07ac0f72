"""Imports run one way: `tasks` → `todos` → `config`, never back.

`config/` names the apps only in settings.py and urls.py, by dotted path; `todos/` never imports
`tasks`. Every import of every source module is read with `ast`, those inside functions too.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Package → the packages its modules must not import, and the modules allowed to anyway.
RULES = {
    "config": ({"todos", "tasks"}, {"config/settings.py", "config/urls.py"}),
    "todos": ({"tasks"}, set()),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in `source`, relative ones resolved."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            # `from todos import cache` names its package, which is what the rules look at.
            found.append((node.lineno, name))
    return found


def violations(path: Path, source: str) -> list[str]:
    relative = path.relative_to(ROOT).as_posix()
    forbidden, allowed = RULES[relative.split("/")[0]]
    if relative in allowed:
        return []
    module = module_name(path)
    return [
        f"{relative}:{line} ({module}) imports {name}"
        for line, name in imported_modules(source, module, path.name == "__init__.py")
        if name.split(".")[0] in forbidden
    ]


def source_files() -> list[Path]:
    return sorted(path for package in RULES for path in (ROOT / package).rglob("*.py"))


def test_imports_run_one_way():
    problems = [
        problem for path in source_files() for problem in violations(path, path.read_text())
    ]

    assert problems == [], "imports against the layering:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        (
            "config/edge/gateway.py",
            "from todos.conditional import none_match\n",
            "todos.conditional",
        ),
        ("config/celery.py", "def f():\n    from tasks import metrics\n", "tasks"),
        ("config/edge/__init__.py", "import tasks.metrics\n", "tasks.metrics"),
        ("todos/views.py", "from tasks.exports import export_run_task\n", "tasks.exports"),
    ],
)
def test_a_backward_import_is_reported_with_its_module(path, source, expected):
    (problem,) = violations(ROOT / path, source)

    assert problem.startswith(f"{path}:")
    assert problem.endswith(f"imports {expected}")


def test_settings_and_urls_may_name_the_apps():
    assert violations(ROOT / "config/urls.py", "from todos.views import TodoViewSet\n") == []
    assert violations(ROOT / "config/edge/http_cache.py", "import json\n") == []
    assert violations(ROOT / "todos/cache.py", "from config.edge import response_cache\n") == []
