"""The performance report: row names, the product targets as ratios within one run, met or not,
and the Markdown table with the scale facts (req/s per core, cores for 10k req/s)."""

from __future__ import annotations

# What each scenario loads, as the report names it.
SCENARIOS = {
    "peer_list": "list",
    "peer_create": "create",
    "list_hit": "list, cache hit",
    "list_uncached": "list, uncached (standby)",
    "item_uncached": "item GET, uncached (standby)",
    "create": "create (POST)",
    "patch": "PATCH",
    "mixed": "mixed 80/20, read-your-writes",
}
SERVERS = {
    "ceiling": "nginx static file (ceiling)",
    "express": "express-seed",
    "fastapi": "fastapi-seed",
    "direct": "Todo Scale direct (1 replica)",
    "nginx": "Todo Scale via nginx",
    "granian": "Todo Scale on granian (direct, 1 replica)",
}
OURS = ("direct", "nginx", "granian")
# The product targets: (our server, our scenario, peer, peer's scenario, the least ratio of
# req/s). Those of gunicorn, the shipped default, direct and through nginx; granian (opt-in,
# SERVER=granian) has one of its own.
GUNICORN_TARGETS = tuple(
    (via, *target)
    for via in ("direct", "nginx")
    for target in (
        ("list_hit", "fastapi", "peer_list", 5.0),
        ("list_hit", "express", "peer_list", 0.5),
        ("list_uncached", "fastapi", "peer_list", 2.0),
        ("item_uncached", "fastapi", "peer_list", 3.0),
        ("create", "fastapi", "peer_create", 1.5),
        ("patch", "fastapi", "peer_create", 1.5),
    )
)
RATIO_TARGETS = (*GUNICORN_TARGETS, ("granian", "list_hit", "express", "peer_list", 1.0))
# Every scenario of ours must answer 99 % of requests within this, at c=64.
P99_LIMIT_MS = 100.0
# The throughput the scale facts are sized for.
SCALE_RPS = 10_000


def label(scenario: str, server: str) -> str:
    return f"{SCENARIOS[scenario]} on {SERVERS[server]}"


def errors(row: dict) -> int:
    return row["non_2xx"] + row["socket_errors"]


def targets(rows: list[dict]) -> list[dict]:
    """Each target with its measured value and whether it is met (None: no peer row to compare)."""
    found = {(r["scenario"], r["server"]): r for r in rows}
    results = []
    for via, ours, peer, theirs, least in RATIO_TARGETS:
        row, other = found.get((ours, via)), found.get((theirs, peer))
        ratio = row["rps"] / other["rps"] if row and other else None
        results.append({
            "target": f"{SCENARIOS[ours]}, {via}: >= {least:g}x {SERVERS[peer]}'s "
                      f"{SCENARIOS[theirs]}",
            "value": None if ratio is None else round(ratio, 2),
            "met": None if ratio is None else ratio >= least,
        })  # fmt: skip
    ours = [r for r in rows if r["server"] in OURS]
    for row in ours:
        results.append({
            "target": f"{label(row['scenario'], row['server'])}: p99 <= {P99_LIMIT_MS:g} ms",
            "value": round(row["p99_ms"], 1),
            "met": row["p99_ms"] <= P99_LIMIT_MS,
        })  # fmt: skip
    results.append({
        "target": "zero errors (non-2xx, socket errors) in every scenario of ours",
        "value": sum(errors(r) for r in ours),
        "met": not any(errors(r) for r in ours),
    })  # fmt: skip
    for row in ours:
        if "stale_reads" in row:
            results.append({
                "target": f"{label(row['scenario'], row['server'])}: zero stale reads "
                          f"(of {row['checked_reads']} reads after a write)",
                "value": row["stale_reads"],
                "met": row["stale_reads"] == 0,
            })  # fmt: skip
    return results


def verdict(target: dict) -> str:
    return {True: "met", False: "NOT MET", None: "skipped (no peers)"}[target["met"]]


def per_core(ms: float) -> str:
    return f"{1000 / ms:.0f}" if ms else "-"


def markdown(rows: list[dict], results: list[dict], meta: dict) -> str:
    other = sorted(r["other_cores"] for r in rows)[len(rows) // 2]
    lines = [
        "# Todo Scale performance, beside its peers",
        "",
        f"{meta['date']}, {meta['cores']} cores. wrk -c{meta['connections']} "
        f"-d{meta['seconds']:g}s per round after a {meta['warm_seconds']:g} s warm-up, medians "
        f"of {meta['rounds']} rounds taken in turns (every row one round per pass), one run. "
        f"Todo Scale as shipped (deploy/gunicorn.conf.py, nothing set but rate limits off), "
        f"direct to one replica and through nginx over {meta['replicas']} replicas; one "
        "Postgres primary + 1 streaming standby and one Redis shared by every server. "
        "**wrk, the data stores and every server share the cores**: only the ratios between "
        f"rows of one run mean anything. Noise: load average {meta['load_before']:.2f} before, "
        f"{meta['load_after']:.2f} after; other processes used a median of {other:.2f} cores "
        "during the rounds (column 'other_cores').",
        "",
    ]
    if not meta["peers"]:
        lines += ["No peers directory was given: the express-seed and fastapi-seed rows are "
                  "skipped (`BENCH_PEERS=DIR make bench`).", ""]  # fmt: skip
    lines += [
        "| scenario | server | req/s (min-max) | p50 ms | p99 ms | errors "
        "| server CPU ms/req | Postgres+Redis CPU ms/req | req/s per server core "
        "| cores for 10k req/s (server + stores) | wrk cores | other_cores | stale reads |",
        "| --- | --- |" + " ---: |" * 11,
    ]
    for r in rows:
        cpu, stores = r["cpu_ms_per_request"], r["stores_cpu_ms_per_request"]
        stale = f"{r['stale_reads']}/{r['checked_reads']}" if "stale_reads" in r else "-"
        lines.append(
            f"| {SCENARIOS[r['scenario']]} | {SERVERS[r['server']]} | {r['rps']:.0f} "
            f"({r['rps_min']:.0f}-{r['rps_max']:.0f}) | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {errors(r)} | {cpu:.3f} | {stores:.3f} | {per_core(cpu)} "
            f"| {SCALE_RPS * cpu / 1000:.1f} + {SCALE_RPS * stores / 1000:.1f} "
            f"| {r['wrk_cores']:.2f} | {r['other_cores']:.2f} | {stale} |"
        )
    lines += ["", "## Targets", ""]
    for t in results:
        value = "-" if t["value"] is None else t["value"]
        lines.append(f"- {t['target']}: {value} — **{verdict(t)}**")
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines += [
        "",
        "## How to read it",
        "",
        "req/s is the median round, the slowest and fastest in brackets. Server CPU is the "
        "server's own process tree (through nginx: nginx and every replica); Postgres+Redis is "
        "the shared data stores' time over the same round (the primary, the standby and the "
        "backends they reaped), so a server that hands its work to the database does not look "
        "cheaper than it is. req/s per server core is 1000 / server CPU ms per request: what one "
        "core of web replicas serves when the data stores have cores of their own. Cores for "
        f"{SCALE_RPS:,} req/s is that rate times the CPU per request, for the web replicas and "
        "the data stores apart; at the shipped one worker per core, the first figure is also "
        "the number of one-core replicas.",
        "",
        f"Writes: create and PATCH rotate over {meta['writers']} users nobody lists, so the "
        f"lists stay at {meta['todos']} todos; the peers' creates run on instances of their own "
        "for the same reason. Mixed: each connection is one client with a user of its own "
        "(wrk with one thread per connection), reading its list and PATCHing a new title into "
        "its first todo every fifth request; the read after a write must show the new title. "
        "Rate limits are off (RATE_LIMIT_USER/RATE_LIMIT_IP=off): this measures serving, not "
        "throttling. express-seed runs one worker per core, fastapi-seed `uvicorn --workers 2`, "
        "as the peers' README starts them." + (f" Versions: {versions}." if versions else ""),
    ]
    return "\n".join(lines) + "\n"
