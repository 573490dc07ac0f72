"""`manage.py replication_status`: each read replica's reachability, replay position and lag."""

import json

from django.core.management.base import BaseCommand, CommandError

from config.replicas.health import replication_status


class Command(BaseCommand):
    help = (
        "Show, for every replica in DATABASE_REPLICA_URLS, whether it answers, the WAL position "
        "it has replayed, and how far behind the primary it is (bytes and seconds). Exits with "
        "status 1 if a replica is unreachable or is not a standby."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON document")

    def handle(self, *args, json: bool = False, **options):
        report = replication_status()
        rows = report["replicas"]
        if json:
            self.stdout.write(_dumps(report))
        elif not rows:
            self.stdout.write("no replicas configured (DATABASE_REPLICA_URLS is empty)")
        else:
            self._table(rows)
        failed = [row["alias"] for row in rows if row["error"]]
        if failed:
            raise CommandError(f"replica(s) not serving: {', '.join(failed)}")

    def _table(self, rows: list[dict]) -> None:
        header = ("replica", "reachable", "replay_lsn", "lag_bytes", "lag_seconds", "replay")
        lines = [header]
        for row in rows:
            if row["error"]:
                replay = row["error"]
            else:
                replay = "paused" if row["replay_paused"] else "replaying"
            seconds = row["lag_seconds"]
            lines.append(
                (
                    row["alias"],
                    "yes" if row["reachable"] else "no",
                    row["replay_lsn"] or "-",
                    "-" if row["lag_bytes"] is None else str(row["lag_bytes"]),
                    "-" if seconds is None else f"{seconds:.3f}",
                    replay,
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
        for line in lines:
            cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
            self.stdout.write("  ".join([*cells, line[-1]]))


def _dumps(document: dict) -> str:
    return json.dumps(document, indent=2)
