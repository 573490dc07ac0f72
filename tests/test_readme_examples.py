"""The README's shell examples work as pasted: the Quick start and The API blocks, run in order
with curl against a live server on the embedded default (SQLite), as `make run` serves it.

A line `NAME=$(curl ...)` keeps its output in the shell variable NAME, as it would in the shell
of someone pasting the examples one after the other; the commands after it see `$NAME`."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers import clean_env, gunicorn, run_manage

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CACHING = ROOT / "docs" / "caching.md"
# A comment announcing an example, and the status it documents ("# create: 201, ...").
DOCUMENTED_STATUS = re.compile(r":\s*([1-5][0-9]{2})\b")
# A command whose output a variable keeps (`PHONE=$(curl ... | python3 -c ...)`).
CAPTURE = re.compile(r"([A-Z][A-Z0-9_]*)=\$\((curl .*)\)")

pytestmark = pytest.mark.skipif(not shutil.which("curl"), reason="the examples use curl")


def section(text: str, heading: str) -> str:
    """The README from `heading` to the next heading of the same level."""
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n")
    end = text.find(f"\n{level} ", start + len(heading) + 2)
    return text[start : end if end != -1 else None]


def examples(markdown: str) -> list[tuple[str, str]]:
    """(comment, command) for every curl command of the ```sh blocks, in order, and for every
    `NAME=$(curl ...)`; a command's comment is the nearest `#` line above it."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, flags=re.S):
        comment = ""
        for chunk in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = chunk.split("  #", 1)[0].strip()
            if chunk.strip().startswith("#"):
                comment = chunk.strip()
            elif line.startswith("curl ") or CAPTURE.fullmatch(line):
                found.append((comment, line))
    return found


def served_like_make_run(tmp_path) -> tuple[dict, str]:
    """The environment of a server as `make run` leaves it (migrated, the demo user), and the
    demo user's token."""
    env = clean_env(DJANGO_SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    assert run_manage("migrate", "--noinput", env=env).returncode == 0
    made = run_manage("create_api_user", "demo", "--password", "demo-password", env=env)
    return env, made.stdout.strip()


def test_the_readme_examples_answer_as_documented(tmp_path):
    # given
    env, token = served_like_make_run(tmp_path)
    text = README.read_text()
    steps = examples(section(text, "## Quick start")) + examples(section(text, "## The API"))
    assert len(steps) >= 12, steps

    variables = {"TOKEN": token}
    with gunicorn(env) as server:
        for comment, command in steps:
            command = command.replace("http://127.0.0.1:8000", server.base)
            if capture := CAPTURE.fullmatch(command):
                # when: a variable keeps the command's output, for the commands after it
                name = capture.group(1)
                run = subprocess.run(
                    ["bash", "-c", f'{command} && printf %s "${name}"'],
                    env={**env, **variables},
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                assert run.returncode == 0, (comment, command, run.stderr)
                assert run.stdout, (comment, command, run.stderr)
                variables[name] = run.stdout
                continue
            # when: the command as written, against this server, with the status appended
            run = subprocess.run(
                ["bash", "-c", command.replace("curl ", "curl -w '\\n%{http_code}' ", 1)],
                env={**env, **variables},
                capture_output=True,
                text=True,
                timeout=30,
            )
            status = int(run.stdout.rsplit("\n", 1)[-1])

            # then: the documented status, or a success where the comment names none
            documented = DOCUMENTED_STATUS.search(comment)
            if documented:
                assert status == int(documented.group(1)), (comment, command, run.stdout)
            else:
                assert 200 <= status < 300, (comment, command, run.stdout)


def test_the_if_match_example_updates_a_todo_it_creates(tmp_path):
    # given: the conditional-request example, a script of its own (it keeps shell variables)
    env, token = served_like_make_run(tmp_path)
    # (docs/caching.md, the first shell block)
    script = re.findall(r"```sh\n(.*?)```", CACHING.read_text(), flags=re.S)[0]

    with gunicorn(env) as server:
        # when
        run = subprocess.run(
            ["bash", "-c", script.replace("http://127.0.0.1:8000", server.base)],
            env={**env, "TOKEN": token},
            capture_output=True,
            text=True,
            timeout=30,
        )

    # then: the PATCH with the todo's own ETag is accepted
    assert run.stdout.startswith("HTTP/1.1 200"), (run.stdout, run.stderr)
    assert '"completed":true' in run.stdout
