"""The domain side of the transactional outbox: the names of the tasks services enqueue, and the
signal sent once a transaction that wrote outbox rows has committed.

Services name tasks by string and never import Celery; tasks/outbox.py listens to the signal and
publishes the rows (see its docstring for the whole relay).
"""

from django.dispatch import Signal

EXPORT_RUN_TASK = "tasks.exports.export_run_task"
STATS_RECOMPUTE_TASK = "tasks.stats.stats_recompute_task"

# Sent after commit with `ids`, the primary keys of the OutboxMessage rows the transaction wrote.
outbox_committed = Signal()
