"""Writes of todos, accounts and the rows of deferred work, one module per topic. Each service is
one transaction and takes keyword arguments.

Every public name is re-exported here: callers write `from todos import services` and
`services.todo_create(...)` whichever module holds the service.
"""

from todos.services.accounts import (
    UsernameTaken,
    user_register,
    user_token_issue,
    user_token_revoke,
    user_tokens_revoke,
)
from todos.services.exports import (
    EXPORT_BATCH_ROWS,
    export_build,
    export_create,
    export_fail,
    export_start,
)
from todos.services.housekeeping import (
    EXPORT_RETENTION,
    EXPORT_STUCK_AFTER,
    OUTBOX_RETENTION,
    PURGE_BATCH,
    housekeeping_purge,
    rows_delete_in_batches,
)
from todos.services.idempotency import (
    IDEMPOTENCY_KEY_TTL,
    IdempotencyKeyReused,
    todo_create_idempotent,
)
from todos.services.outbox import outbox_enqueue, outbox_mark_failed, outbox_mark_sent
from todos.services.reminders import REMINDER_GRACE, todo_remind
from todos.services.seeding import SEED_USERNAME_PREFIX, SEED_WORDS, todos_seed
from todos.services.stats import stats_recompute, todo_completion_changed
from todos.services.todos import (
    TODO_OPERATOR_FIELDS,
    TODO_WRITABLE_FIELDS,
    PreconditionFailed,
    todo_create,
    todo_delete,
    todo_delete_all,
    todo_delete_checked,
    todo_operator_update,
    todo_update,
    todo_update_checked,
    todo_update_owned,
    todos_delete,
    todos_set_completed,
)

__all__ = [
    "EXPORT_BATCH_ROWS",
    "EXPORT_RETENTION",
    "EXPORT_STUCK_AFTER",
    "IDEMPOTENCY_KEY_TTL",
    "OUTBOX_RETENTION",
    "PURGE_BATCH",
    "REMINDER_GRACE",
    "SEED_USERNAME_PREFIX",
    "SEED_WORDS",
    "TODO_OPERATOR_FIELDS",
    "TODO_WRITABLE_FIELDS",
    "IdempotencyKeyReused",
    "PreconditionFailed",
    "UsernameTaken",
    "export_build",
    "export_create",
    "export_fail",
    "export_start",
    "housekeeping_purge",
    "outbox_enqueue",
    "outbox_mark_failed",
    "outbox_mark_sent",
    "rows_delete_in_batches",
    "stats_recompute",
    "todo_completion_changed",
    "todo_create",
    "todo_create_idempotent",
    "todo_delete",
    "todo_delete_all",
    "todo_delete_checked",
    "todo_operator_update",
    "todo_remind",
    "todo_update",
    "todo_update_checked",
    "todo_update_owned",
    "todos_delete",
    "todos_seed",
    "todos_set_completed",
    "user_register",
    "user_token_issue",
    "user_token_revoke",
    "user_tokens_revoke",
]
