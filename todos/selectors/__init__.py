"""Reads of todos and of the rows deferred work keeps, one module per topic. Every selector of
user data returns rows of one owner only.

Every public name is re-exported here: callers write `from todos import selectors` and
`selectors.todo_list(...)` whichever module holds the selector.
"""

from todos.selectors.exports import (
    export_chunk_data,
    export_chunk_ids,
    export_get,
    todo_export_batches,
    todo_export_count,
)
from todos.selectors.outbox import outbox_unsent
from todos.selectors.reminders import todo_ids_due_for_reminder
from todos.selectors.stats import user_stats_get
from todos.selectors.todos import todo_get, todo_list

__all__ = [
    "export_chunk_data",
    "export_chunk_ids",
    "export_get",
    "outbox_unsent",
    "todo_export_batches",
    "todo_export_count",
    "todo_get",
    "todo_ids_due_for_reminder",
    "todo_list",
    "user_stats_get",
]
