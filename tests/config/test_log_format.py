"""The log format of a process: JSON lines unless told plain, on stderr, stdout left to output."""

import json

from tests.servers import clean_env, run_manage

WARN = (
    "import logging; logging.getLogger('todo_scale.check').warning('disk %s full', 'sda');"
    "print('out')"
)


def test_off_a_terminal_a_record_is_one_json_line_on_stderr():
    result = run_manage(
        "shell", "--verbosity", "0", "-c", WARN, env=clean_env(DJANGO_SECRET_KEY="log-format-test")
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "out\n"
    (line,) = [line for line in result.stderr.splitlines() if "todo_scale.check" in line]
    record = json.loads(line)
    assert {k: record[k] for k in ("level", "logger", "message", "request_id")} == {
        "level": "WARNING",
        "logger": "todo_scale.check",
        "message": "disk sda full",
        "request_id": None,
    }
    assert record["time"].endswith("+00:00")


def test_plain_is_text_for_a_terminal():
    env = clean_env(DJANGO_SECRET_KEY="log-format-test", LOG_FORMAT="plain")

    result = run_manage("shell", "--verbosity", "0", "-c", WARN, env=env)

    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "todo_scale.check" in line]
    assert line.endswith(" WARNING todo_scale.check disk sda full")
