"""Progress bars for the long operator commands (`seed_todos`, `outbox_relay --once`).

A bar goes to the command's stderr, never to stdout: what a command prints there (a summary, a
count) stays parseable in a pipe. It is drawn only on a terminal (tqdm's `disable=None`), so a
command run by cron, a Job or a test writes no control characters into a log, and `--no-progress`
turns it off on a terminal too. While a bar is drawn, log lines (config/log_format.py, also on
stderr) are written above it instead of through it (tqdm's `logging_redirect_tqdm`, which keeps
the handler's formatter and request id filter).

Work in a web request or a worker has no terminal: it logs its progress instead (an export's
lines, todos/services/exports.py).
"""

import contextlib
import os
from collections.abc import Iterator
from typing import TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

# The size of a terminal that reports none (a fresh `docker exec -t` is 0x0 until resized): tqdm
# would fit the bar into 0 - 1 columns and rows, and draw nothing.
FALLBACK_COLUMNS, FALLBACK_ROWS = 80, 24


@contextlib.contextmanager
def progress_bar(
    stream: TextIO, *, desc: str, unit: str, total: int | None = None, enabled: bool = True
) -> Iterator[tqdm]:
    """A bar counting `unit`s on `stream`, shown only if `enabled` and `stream` is a terminal;
    closed (its last state left on screen) when the block ends.

    `stream` may be a command's `self.stderr`: Django's wrapper appends a line ending to every
    write and styles it, which would break the bar's in-place redraws, so the bar writes to the
    stream it wraps. A hidden bar's `update` costs nothing; check `bar.disable` before work done
    only for the bar (a count for its total).
    """
    out = getattr(stream, "_out", stream)
    sized = _columns(out) > 0
    with tqdm(
        total=total,
        desc=desc,
        unit=f" {unit}",
        file=out,
        disable=None if enabled else True,
        # Follows the terminal's width as it is resized, where the terminal has one.
        dynamic_ncols=sized,
        ncols=None if sized else FALLBACK_COLUMNS,
        nrows=None if sized else FALLBACK_ROWS,
    ) as bar:
        if bar.disable:
            yield bar
        else:
            with logging_redirect_tqdm():
                yield bar


def _columns(stream: TextIO) -> int:
    """The width of the terminal `stream` writes to; 0 if it reports none or is no terminal."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def bar_total(bar: tqdm, total: int) -> None:
    """Give `bar` its total once it is known (after the bar started)."""
    if not bar.disable and bar.total != total:
        bar.total = total
        bar.refresh()
