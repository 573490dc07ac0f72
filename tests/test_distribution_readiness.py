"""Readiness for distributing the user-owned tables by owner (Citus), read from Postgres itself.

docs/scaling.md ("When writes outgrow one primary") describes the step past one primary:
`SELECT create_distributed_table('todos_todo', 'owner_id')` and the other user-owned tables
co-located with it, the users and their tokens as reference tables, the rest local to the
coordinator. Citus then needs, of every distributed table:

- the distribution column in every PRIMARY KEY and UNIQUE constraint or index, never NULL;
- foreign keys to another distributed table that include the distribution column on both sides
  (at the same position), and no ON DELETE SET NULL / SET DEFAULT over it; foreign keys to
  reference tables are fine, to local tables not; a reference table may reference only
  reference tables, a local one reference or local ones;
- every statement filtered by one owner (`WHERE ... "owner_id" = 7`, an INSERT carrying the
  owner), so the coordinator routes it to one shard instead of fanning it out to all.

These tests read the constraints from the catalog (pg_constraint, pg_index) and the statements
from the API's own requests (DRF's APIClient under `CaptureQueriesContext`, the deferred tasks
they trigger included), and compare what would block distribution with `SCHEMA_BLOCKERS` and
`QUERY_BLOCKERS`: each known blocker with why it blocks and what would remove it. A new blocker
fails the test, and so does a blocker that disappeared without its entry being removed.
"""

import re
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from todos import services

OWNER = "owner_id"

DISTRIBUTED, REFERENCE, LOCAL = "distributed", "reference", "local"

# Where each table would live. Every table with a foreign key to the user table, or to a
# distributed one, must be listed (test_every_table_with_an_owner_is_placed); the others are
# local to the coordinator unless listed here.
PLACEMENT = {
    # Distributed by owner_id, co-located with todos_todo: one owner's rows on one shard.
    "todos_todo": (DISTRIBUTED, "the todos: every API read and write is one owner's"),
    "todos_idempotencykey": (DISTRIBUTED, "written in the transaction of the owner's todo"),
    "todos_export": (DISTRIBUTED, "one owner's export, read and written with their todos"),
    "todos_exportchunk": (DISTRIBUTED, "an export's file, co-located with its export"),
    "todos_userstats": (DISTRIBUTED, "counted from one owner's todos, in the same shard"),
    # Reference tables: a copy on every node, so a join with them stays on one shard.
    "auth_user": (REFERENCE, "the owners: every owner_id references it"),
    "todos_apitoken": (REFERENCE, "read by digest on every request before the owner is known"),
    "auth_user_groups": (REFERENCE, "the user's groups, referencing auth_user"),
    "auth_user_user_permissions": (REFERENCE, "the user's permissions, referencing auth_user"),
    "auth_group": (REFERENCE, "referenced by auth_user_groups, a reference table"),
    "auth_group_permissions": (REFERENCE, "referencing auth_group, a reference table"),
    "auth_permission": (REFERENCE, "referenced by auth_user_user_permissions"),
    "django_content_type": (REFERENCE, "referenced by auth_permission, a reference table"),
    # Local to the coordinator: operators' and workers' tables, never read per owner.
    "django_admin_log": (
        LOCAL,
        "the admin's audit log; a local table may reference reference ones",
    ),
    "todos_outboxmessage": (LOCAL, "the outbox: scanned by the relay across every owner"),
    "todos_taskdelivery": (LOCAL, "the workers' delivery counts, keyed by task id"),
}

# What would block distribution by owner in the schema, as this test words it, with why and
# what change would remove it.
SCHEMA_BLOCKERS = {
    "todos_todo: PRIMARY KEY (id)": (
        "a primary key without owner_id: Citus cannot check a unique id across shards",
        "PRIMARY KEY (owner_id, id); ids stay globally unique from the one sequence",
    ),
    "todos_idempotencykey: PRIMARY KEY (id)": (
        "a primary key without owner_id",
        "PRIMARY KEY (owner_id, id)",
    ),
    "todos_idempotencykey: FOREIGN KEY (todo_id) -> todos_todo (id)": (
        "a foreign key between distributed tables without the distribution column",
        "FOREIGN KEY (owner_id, todo_id) -> todos_todo (owner_id, id), NO ACTION",
    ),
    "todos_export: PRIMARY KEY (id)": (
        "a primary key without owner_id",
        "PRIMARY KEY (owner_id, id)",
    ),
    "todos_exportchunk: PRIMARY KEY (id)": (
        "a primary key without owner_id",
        "PRIMARY KEY (owner_id, id)",
    ),
    "todos_exportchunk: FOREIGN KEY (export_id) -> todos_export (id)": (
        "a foreign key between distributed tables without the distribution column",
        "FOREIGN KEY (owner_id, export_id) -> todos_export (owner_id, id)",
    ),
}

# What would block distribution by owner in the API's statements, as "operation: statement"
# (the statement's table and the columns its WHERE clause names), with why and the remedy.
# The API's own operations have none: each of their statements names one owner.
QUERY_BLOCKERS = {
    "admin: move a todo to another owner: SELECT todos_todo WHERE id": (
        "an operator's lookup by id alone: a SELECT ... FOR UPDATE over every shard",
        "the admin passes the todo's owner with its id (it shows it on the page)",
    ),
    "admin: move a todo to another owner: UPDATE todos_todo SET owner_id": (
        "a row's distribution column cannot change: it would have to move to another shard",
        "the move as an INSERT under the new owner (same id) and a DELETE under the old one",
    ),
}


# --- the schema, from the catalog ---------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A PRIMARY KEY, UNIQUE or FOREIGN KEY constraint, or a unique index of its own."""

    kind: str  # "PRIMARY KEY", "UNIQUE", "UNIQUE INDEX <name>", "FOREIGN KEY"
    table: str
    columns: tuple[str, ...]
    referenced_table: str | None = None
    referenced_columns: tuple[str, ...] = ()
    on_delete: str = "a"  # pg_constraint.confdeltype: a no action, n set null, d set default

    def __str__(self) -> str:
        text = f"{self.table}: {self.kind} ({', '.join(self.columns)})"
        if self.referenced_table:
            text += f" -> {self.referenced_table} ({', '.join(self.referenced_columns)})"
        return text


# Each constraint with its columns by name, in the constraint's order (conkey, confkey).
CONSTRAINTS_SQL = """
    SELECT c.contype, t.relname,
           ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, i)
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                 ORDER BY k.i),
           f.relname,
           ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, i)
                 JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
                 ORDER BY k.i),
           c.confdeltype
    FROM pg_constraint c
    JOIN pg_class t ON t.oid = c.conrelid
    LEFT JOIN pg_class f ON f.oid = c.confrelid
    WHERE t.relnamespace = current_schema()::regnamespace AND c.contype IN ('p', 'u', 'f')
"""

# Unique indexes that no constraint owns (a partial or expression one, say): each key column as
# pg_get_indexdef spells it, an expression as its text.
UNIQUE_INDEXES_SQL = """
    SELECT i.relname, t.relname,
           ARRAY(SELECT pg_get_indexdef(x.indexrelid, k, true)
                 FROM generate_series(1, x.indnkeyatts) AS k)
    FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_class t ON t.oid = x.indrelid
    WHERE x.indisunique AND t.relnamespace = current_schema()::regnamespace
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid
                      AND c.contype IN ('p', 'u'))
"""


def catalog_keys() -> list[Key]:
    """Every primary key, unique constraint, unique index and foreign key of the schema."""
    kinds = {"p": "PRIMARY KEY", "u": "UNIQUE", "f": "FOREIGN KEY"}
    with connection.cursor() as cursor:
        cursor.execute(CONSTRAINTS_SQL)
        keys = [
            Key(kinds[contype], table, tuple(cols), ftable, tuple(fcols or ()), deltype)
            for contype, table, cols, ftable, fcols, deltype in cursor.fetchall()
        ]
        cursor.execute(UNIQUE_INDEXES_SQL)
        keys += [
            Key(f"UNIQUE INDEX {name}", table, tuple(cols))
            for name, table, cols in cursor.fetchall()
        ]
    return keys


def owner_columns() -> dict[str, bool]:
    """Table → whether its owner_id is NOT NULL, for the tables that have one."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT t.relname, a.attnotnull FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid
            WHERE t.relnamespace = current_schema()::regnamespace AND t.relkind = 'r'
              AND a.attname = %s AND NOT a.attisdropped
            """,
            [OWNER],
        )
        return dict(cursor.fetchall())


def placement(table: str) -> str:
    return PLACEMENT.get(table, (LOCAL, ""))[0]


def schema_blockers(keys: list[Key], owners: dict[str, bool]) -> dict[str, str]:
    """Blocker → why, for every rule of the module's docstring that the schema breaks."""
    found = {}
    for table, (kind, _) in PLACEMENT.items():
        if kind != DISTRIBUTED:
            continue
        if table not in owners:
            found[f"{table}: no {OWNER} column"] = "a distributed table needs the column"
        elif not owners[table]:
            found[f"{table}: {OWNER} may be NULL"] = "a distribution column is never NULL"
    for key in keys:
        source, target = placement(key.table), placement(key.referenced_table or key.table)
        if key.kind != "FOREIGN KEY":
            if source == DISTRIBUTED and OWNER not in key.columns:
                found[str(key)] = f"a {key.kind.lower()} of a distributed table without {OWNER}"
            continue
        if source == DISTRIBUTED and target == DISTRIBUTED:
            pairs = list(zip(key.columns, key.referenced_columns, strict=True))
            if (OWNER, OWNER) not in pairs:
                found[str(key)] = f"between distributed tables, not on {OWNER} at both ends"
            elif key.on_delete in ("n", "d"):
                found[str(key)] = "ON DELETE SET NULL/DEFAULT over the distribution column"
        elif source == DISTRIBUTED and target == LOCAL:
            found[str(key)] = "from a distributed table to a local one"
        elif source == REFERENCE and target != REFERENCE:
            found[str(key)] = f"from a reference table to a {target} one"
        elif source == LOCAL and target == DISTRIBUTED:
            found[str(key)] = "from a local table to a distributed one"
    return found


# --- the statements, from the SQL text ----------------------------------------------------

STRING = re.compile(r"(?:\bE)?'(?:[^']|'')*'")
# An identifier as Django quotes it ("todos_todo") or as hand-written SQL may not (todos_todo).
NAME = r'"?(\w+)"?'
# Words that may follow a table's name but are not an alias of it.
NOT_ALIAS = (
    r"WHERE|INNER|LEFT|RIGHT|FULL|CROSS|JOIN|ON|ORDER|GROUP|HAVING|LIMIT|OFFSET|SET|VALUES"
    r"|FOR|RETURNING|UNION|USING|WINDOW|DEFAULT"
)
# A table reference and its alias, if any (`FROM "todos_todo" U0`, `JOIN auth_user AS u`).
TABLE = re.compile(
    rf"\b(?:FROM|JOIN|UPDATE|INTO)\s+{NAME}(?:\s+(?:AS\s+)?(?!(?:{NOT_ALIAS})\b){NAME})?",
    re.IGNORECASE,
)
INSERT_COLUMNS = re.compile(rf"^INSERT INTO {NAME}\s*\(([^)]*)\)", re.IGNORECASE)
ASSIGNMENTS = re.compile(r'^UPDATE "?(\w+)"?(?:\s+\w+)? SET (.*?) WHERE ', re.IGNORECASE)
OWNER_SET = re.compile(rf'(?:^|, )"?{OWNER}"? = ')
# A term that names a column: `"todos_todo"."owner_id" = 7`, `U0."id" IN (...)`, `owner_id = 7`.
COLUMN_TERM = re.compile(rf"^(?:{NAME}\.)?{NAME}(?:\s|$)")
OWNER_TERM = re.compile(rf"^(?:{NAME}\.)?\"?{OWNER}\"? (?:= (-?\d+)|IN \((-?\d+)\))$", re.I)
# Where a WHERE clause ends, at the statement's own level.
CLAUSE_END = re.compile(
    r"\b(?:ORDER BY|GROUP BY|HAVING|LIMIT|OFFSET|FOR UPDATE|FOR NO KEY|"
    r"FOR SHARE|RETURNING|ON CONFLICT)\b",
    re.IGNORECASE,
)
AND, OR = re.compile(r"\bAND\b", re.IGNORECASE), re.compile(r"\bOR\b", re.IGNORECASE)


def depths(text: str) -> list[int]:
    """The parenthesis depth before each character of `text` (string literals removed)."""
    level, out = 0, []
    for char in text:
        if char == ")":
            level -= 1
        out.append(level)
        if char == "(":
            level += 1
    return out


def top_level(text: str, pattern: re.Pattern) -> list[re.Match]:
    level = depths(text)
    return [m for m in pattern.finditer(text) if level[m.start()] == 0]


def unwrap(text: str) -> str:
    """`text` without parentheses that enclose all of it."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")") and min(depths(text)[1:-1] or [1]) >= 1:
        text = text[1:-1].strip()
    return text


def conjuncts(condition: str) -> list[str]:
    """The terms a condition ANDs together at its top level, nested ANDs flattened; a
    disjunction is one term (none of its parts holds for every row)."""
    condition = unwrap(condition)
    if top_level(condition, OR):
        return [condition]
    splits = top_level(condition, AND)
    if not splits:
        return [condition]
    parts, start = [], 0
    for match in splits:
        parts.append(condition[start : match.start()])
        start = match.end()
    parts.append(condition[start:])
    return [term for part in parts for term in conjuncts(part)]


def where_clause(sql: str) -> str | None:
    where = top_level(sql, re.compile(r"\bWHERE\b", re.IGNORECASE))
    if not where:
        return None
    rest = sql[where[0].end() :]
    end = top_level(rest, CLAUSE_END)
    return rest[: end[0].start()] if end else rest


@dataclass(frozen=True)
class Statement:
    sql: str  # string literals replaced by '?'

    @classmethod
    def parse(cls, sql: str) -> "Statement":
        return cls(STRING.sub("'?'", " ".join(sql.split())))

    @property
    def verb(self) -> str:
        return self.sql.split(" ", 1)[0].upper()

    def references(self) -> list[tuple[str, str | None]]:
        """(table, alias or None) of every table the statement names."""
        return [(match.group(1), match.group(2)) for match in TABLE.finditer(self.sql)]

    def tables(self) -> list[str]:
        return [table for table, _ in self.references()]

    def _is(self, qualifier: str | None, table: str) -> bool:
        """Whether a column qualified by `qualifier` (None: unqualified) is one of `table`'s:
        its name or an alias of it, or no qualifier in a statement of that table alone."""
        references = self.references()
        if qualifier is None:
            return len(references) == 1 and references[0][0] == table
        return any(qualifier in (name, alias) for name, alias in references if name == table)

    def owner_values(self, table: str) -> list[str]:
        """The owners a top-level term of the WHERE clause pins `table` to (`= 7`, `IN (7)`)."""
        values = []
        for term in conjuncts(where_clause(self.sql) or ""):
            match = OWNER_TERM.match(term)
            if match and self._is(match.group(1), table):
                values.append(match.group(2) or match.group(3))
        return values

    def filter_columns(self, table: str) -> list[str]:
        """The columns of `table` the top-level terms of the WHERE clause compare, in order; a
        term of another kind (a disjunction, another table's column) is "(...)"."""
        columns = []
        for term in conjuncts(where_clause(self.sql) or ""):
            column = COLUMN_TERM.match(term)
            simple = column and not top_level(unwrap(term), OR)
            name = column.group(2) if simple and self._is(column.group(1), table) else "(...)"
            if name not in columns:
                columns.append(name)
        return columns

    def describe(self, table: str) -> str:
        if self.verb == "INSERT":
            return f"INSERT {table} without {OWNER}"
        columns = self.filter_columns(table)
        return f"{self.verb} {table} " + (
            f"WHERE {', '.join(columns)}" if columns else "unfiltered"
        )

    def blockers(self) -> dict[str, str]:
        """What keeps this statement from running on one shard: description → why."""
        found, owners = {}, set()
        tables = self.tables()
        distributed = [t for t in dict.fromkeys(tables) if placement(t) == DISTRIBUTED]
        for table in distributed:
            if self.verb == "INSERT":
                insert = INSERT_COLUMNS.match(self.sql)
                columns = (
                    [c.strip().strip('"') for c in insert.group(2).split(",")] if insert else []
                )
                if insert and insert.group(1) == table and OWNER in columns:
                    continue
                found[self.describe(table)] = f"an INSERT into {table} that names no owner"
                continue
            values = self.owner_values(table)
            if len(values) < tables.count(table) or not values:
                found[self.describe(table)] = f"no top-level {OWNER} = <one owner> on {table}"
            owners.update(values)
            assigned = ASSIGNMENTS.match(self.sql)
            if assigned and assigned.group(1) == table and OWNER_SET.search(assigned.group(2)):
                found[f"{self.verb} {table} SET {OWNER}"] = "a distribution column never changes"
        if len(owners) > 1:
            found[f"{self.verb} across owners"] = "distributed tables pinned to different owners"
        return found


# --- the tests ----------------------------------------------------------------------------


def tables_with_a_foreign_key_to(targets: set[str]) -> set[str]:
    """Tables of models (auto-created many-to-many tables included) with a foreign key to one
    of the tables `targets`, declared in Django."""
    return {
        model._meta.db_table
        for model in apps.get_models(include_auto_created=True)
        for field in model._meta.concrete_fields
        if field.is_relation and field.related_model._meta.db_table in targets
    }


def test_every_table_with_an_owner_is_placed():
    user_table = get_user_model()._meta.db_table
    owned = tables_with_a_foreign_key_to({user_table})
    hanging_off = tables_with_a_foreign_key_to(
        {table for table, (kind, _) in PLACEMENT.items() if kind == DISTRIBUTED}
    )

    assert owned == {
        "todos_todo",
        "todos_idempotencykey",
        "todos_export",
        "todos_exportchunk",
        "todos_userstats",
        "todos_apitoken",
        "auth_user_groups",
        "auth_user_user_permissions",
        "django_admin_log",
    }, "a new table with a foreign key to the users: place it in PLACEMENT"
    assert (owned | hanging_off | {user_table}) <= set(PLACEMENT)
    model_tables = {model._meta.db_table for model in apps.get_models(include_auto_created=True)}
    assert set(PLACEMENT) <= model_tables, "PLACEMENT names a table that no longer exists"


def report(kind: str, found: dict[str, str], known: dict[str, tuple[str, str]]) -> str:
    lines = [f"{len(found)} {kind} would block distributing by {OWNER}:"]
    lines += [f"  {blocker}: {why}" for blocker, why in sorted(found.items())]
    new = sorted(set(found) - set(known))
    gone = sorted(set(known) - set(found))
    if new:
        lines.append("New, not in the known list (fix them, or add them with a reason):")
        lines += [f"  {blocker}" for blocker in new]
    if gone:
        lines.append("Known but no longer found (remove them from the list):")
        lines += [f"  {blocker}" for blocker in gone]
    return "\n".join(lines)


@pytest.mark.django_db
def test_the_schema_blocks_distribution_only_where_known():
    found = schema_blockers(catalog_keys(), owner_columns())

    print(report("constraints", found, SCHEMA_BLOCKERS))  # shown with -s
    assert set(found) == set(SCHEMA_BLOCKERS), report("constraints", found, SCHEMA_BLOCKERS)


@pytest.mark.django_db
def test_the_statements_block_distribution_only_where_known(
    api, other_user, django_capture_on_commit_callbacks
):
    operations = api_operations(api, other_user, django_capture_on_commit_callbacks)
    found = {}
    for operation, statements in operations.items():
        for sql in statements:
            for blocker, why in Statement.parse(sql).blockers().items():
                found[f"{operation}: {blocker}"] = why

    assert any(statements for statements in operations.values())
    print(report("statements", found, QUERY_BLOCKERS))  # shown with -s
    assert set(found) == set(QUERY_BLOCKERS), report("statements", found, QUERY_BLOCKERS)


def api_operations(api, other_user, capture_on_commit) -> dict[str, list[str]]:
    """The API's main operations, run through DRF's client one by one, and the admin's move of
    a todo to another owner: operation → the SQL of its request, and separately the SQL of the
    work run after its commit (the outbox publish and the tasks it runs, eagerly here: no
    broker is configured)."""
    captured: dict[str, list[str]] = {}

    def capture(label: str, action):
        with CaptureQueriesContext(connection) as queries, capture_on_commit(execute=True):
            result = action()
            during = len(queries.captured_queries)
        sql = [query["sql"] for query in queries.captured_queries]
        captured[label] = sql[:during]
        if sql[during:]:
            captured[f"{label} (after commit)"] = sql[during:]
        return result

    def run(label: str, method: str, path: str, body=None, status: int = 200, **headers):
        response = capture(
            label, lambda: getattr(api, method)(path, body, format="json", **headers)
        )
        assert response.status_code == status, (label, response.status_code, response.content)
        return response

    due = "2031-01-02T03:04:05Z"
    todo = run("POST /api/todos", "post", "/api/todos", {"title": "a"}, 201).json()
    run(
        "POST /api/todos (all fields)",
        "post",
        "/api/todos",
        {"title": "b", "completed": True, "order": 2, "due_at": due},
        201,
    )
    first = run("GET /api/todos?limit=1", "get", "/api/todos?limit=1")
    next_page = first["Link"][1 : first["Link"].index(">")]
    run("GET /api/todos?cursor", "get", next_page)
    run(
        "GET /api/todos?completed&search&ordering",
        "get",
        "/api/todos?completed=true&search=b&ordering=-due_at&limit=5",
    )
    item = run("GET /api/todos/{id}", "get", f"/api/todos/{todo['id']}")
    run(
        "PATCH /api/todos/{id}",
        "patch",
        f"/api/todos/{todo['id']}",
        {"completed": True},
        HTTP_IF_MATCH=item["ETag"],
    )
    run("PUT /api/todos/{id}", "put", f"/api/todos/{todo['id']}", {"title": "a2"})
    capture(
        "admin: move a todo to another owner",
        lambda: services.todo_operator_update(todo_id=todo["id"], changes={"owner": other_user}),
    )
    created = run(
        "POST /api/todos Idempotency-Key",
        "post",
        "/api/todos",
        {"title": "c"},
        201,
        HTTP_IDEMPOTENCY_KEY="key-1",
    ).json()
    run(
        "POST /api/todos Idempotency-Key (replay)",
        "post",
        "/api/todos",
        {"title": "c"},
        201,
        HTTP_IDEMPOTENCY_KEY="key-1",
    )
    run(
        "POST /api/todos Idempotency-Key (other body)",
        "post",
        "/api/todos",
        {"title": "d"},
        422,
        HTTP_IDEMPOTENCY_KEY="key-1",
    )
    run("DELETE /api/todos/{id}", "delete", f"/api/todos/{created['id']}", status=204)
    export = run("POST /api/exports", "post", "/api/exports", {"format": "csv"}, 202).json()
    run("GET /api/exports/{id}", "get", f"/api/exports/{export['id']}")
    download = run("GET /api/exports/{id}/download", "get", f"/api/exports/{export['id']}/download")
    b"".join(download.streaming_content)  # the chunks are read as the body streams
    run("GET /api/stats", "get", "/api/stats")
    run("DELETE /api/todos", "delete", "/api/todos", status=204)
    return captured


# Statements as Django writes them (literals inlined), and what the check makes of them.
EXAMPLES = [
    ('SELECT "todos_todo"."id" FROM "todos_todo" WHERE "todos_todo"."owner_id" = 7 LIMIT 21', []),
    (
        'SELECT "todos_todo"."id" FROM "todos_todo" WHERE ("todos_todo"."owner_id" = 7 AND'
        ' ("todos_todo"."id" > 3 OR "todos_todo"."title" = \'x) AND (y\')) ORDER BY 1',
        [],
    ),
    (
        'SELECT 1 FROM "todos_todo" WHERE "todos_todo"."id" IN (SELECT 1)',
        ["SELECT todos_todo WHERE id"],
    ),
    (
        'SELECT 1 FROM "todos_todo" WHERE ("todos_todo"."owner_id" = 7 OR "todos_todo"."id" = 1)',
        ["SELECT todos_todo WHERE (...)"],
    ),
    (
        'SELECT 1 FROM "todos_todo" WHERE "todos_todo"."owner_id" = 7 AND "todos_todo"."id" IN'
        ' (SELECT U0."id" FROM "todos_todo" U0 WHERE U0."completed")',
        ["SELECT todos_todo WHERE owner_id, id"],
    ),
    (
        'UPDATE "todos_todo" SET "title" = \'x\' WHERE "todos_todo"."id" = 5',
        ["UPDATE todos_todo WHERE id"],
    ),
    (
        'UPDATE "todos_todo" SET "owner_id" = 8 WHERE ("todos_todo"."owner_id" = 7'
        ' AND "todos_todo"."id" = 5)',
        ["UPDATE todos_todo SET owner_id"],
    ),
    ('DELETE FROM "todos_todo" WHERE "todos_todo"."owner_id" IN (7)', []),
    (
        'INSERT INTO "todos_todo" ("owner_id", "title") VALUES (7, \'a\')'
        ' RETURNING "todos_todo"."id"',
        [],
    ),
    (
        'INSERT INTO "todos_exportchunk" ("export_id") VALUES (1)',
        ["INSERT todos_exportchunk without owner_id"],
    ),
    ('SELECT 1 FROM "auth_user" WHERE "auth_user"."id" = 1', []),
    # Written by hand: unqualified, unquoted, lower case, aliased.
    ('SELECT "title" FROM "todos_todo" WHERE "owner_id" = 7 AND "id" = 5', []),
    ("select title from todos_todo where owner_id = 7 and id = 5", []),
    ("select title from todos_todo where id = 5", ["SELECT todos_todo WHERE id"]),
    ("insert into todos_todo (owner_id, title) values (7, 'a')", []),
    (
        'SELECT t."id" FROM "todos_todo" t JOIN "auth_user" u ON u."id" = t."owner_id"'
        ' WHERE t."owner_id" = 7',
        [],
    ),
    (
        'SELECT 1 FROM "todos_todo" JOIN "auth_user" ON "auth_user"."id" = "todos_todo"."owner_id"'
        ' WHERE "owner_id" = 7',
        ["SELECT todos_todo WHERE (...)"],
    ),
    (
        'SELECT 1 FROM "todos_todo" JOIN "todos_export" ON "todos_export"."owner_id" ='
        ' "todos_todo"."owner_id" WHERE "todos_todo"."owner_id" = 7'
        ' AND "todos_export"."owner_id" = 8',
        ["SELECT across owners"],
    ),
]


@pytest.mark.parametrize(("sql", "expected"), EXAMPLES)
def test_the_owner_filter_is_read_from_the_sql(sql, expected):
    assert list(Statement.parse(sql).blockers()) == expected
