"""The requests of each performance scenario, as wrk Lua scripts: writes that rotate over users,
and the mixed read/write client that checks it reads its own writes.

A scenario that only reads one URL needs no script (wrk's `-H` carries the token). The scripts
are rendered with the run's tokens and todo paths in them, written to a temporary file by
bench/load.py, and report counters as `counter NAME N` lines, which bench/load.py parses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

# One request in this many is a write in the mixed scenario: 80 % reads, 20 % writes.
MIXED_WRITE_EVERY = 5


@dataclass(frozen=True)
class Client:
    """A user the benchmark signs in as: its token and the path of one of its todos."""

    token: str
    todo_path: str


def lua(value: object) -> str:
    """A Lua literal for a string, number, list or dict (JSON's string escapes are Lua's)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua(k)}] = {lua(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    return json.dumps(value)


def rotating_post(path: str, tokens: Sequence[str], body: dict) -> str:
    """POST `body` to `path`, each request as the next of `tokens` (none: no Authorization)."""
    return f"""
local tokens = {lua(list(tokens))}
local body = {lua(json.dumps(body))}
local sent = 0
function request()
  sent = sent + 1
  local headers = {{["Content-Type"] = "application/json"}}
  if #tokens > 0 then
    headers["Authorization"] = "Token " .. tokens[(sent % #tokens) + 1]
  end
  return wrk.format("POST", {lua(path)}, headers, body)
end
"""


def rotating_patch(clients: Sequence[Client]) -> str:
    """PATCH a new title into each client's todo in turn: every request a real change."""
    rows = [{"token": c.token, "path": c.todo_path} for c in clients]
    return f"""
local clients = {lua(rows)}
local sent = 0
function request()
  sent = sent + 1
  local client = clients[(sent % #clients) + 1]
  local headers = {{
    ["Authorization"] = "Token " .. client.token,
    ["Content-Type"] = "application/json",
  }}
  return wrk.format("PATCH", client.path, headers, '{{"title": "patched ' .. sent .. '"}}')
end
"""


def mixed(clients: Sequence[Client], list_path: str) -> str:
    """Each wrk thread is one client holding one connection (run it with -t = -c): it reads its
    list, and every MIXED_WRITE_EVERY-th request PATCHes a new title into its todo; the read after
    a successful write must show that title, else it counts as a stale read."""
    rows = [{"token": c.token, "path": c.todo_path} for c in clients]
    return f"""
local clients = {lua(rows)}
local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
  thread:set("number", #threads)
end
function init(args)
  client = clients[((number - 1) % #clients) + 1]
  reads = {{["Authorization"] = "Token " .. client.token}}
  writes = {{["Authorization"] = "Token " .. client.token, ["Content-Type"] = "application/json"}}
  sent, version, expected, writing = 0, 0, nil, false
  stale_reads, checked_reads = 0, 0
end
function request()
  sent = sent + 1
  writing = sent % {MIXED_WRITE_EVERY} == 0
  if writing then
    version = version + 1
    title = "mixed " .. number .. " v" .. version
    return wrk.format("PATCH", client.path, writes, '{{"title": "' .. title .. '"}}')
  end
  return wrk.format("GET", {lua(list_path)}, reads)
end
function response(status, headers, body)
  if writing then
    if status == 200 then expected = title end
  elseif expected then
    checked_reads = checked_reads + 1
    if not string.find(body, '"' .. expected .. '"', 1, true) then
      stale_reads = stale_reads + 1
    end
    expected = nil
  end
end
function done(summary, latency, requests)
  local stale, checked = 0, 0
  for _, thread in ipairs(threads) do
    stale = stale + thread:get("stale_reads")
    checked = checked + thread:get("checked_reads")
  end
  io.write("counter stale_reads " .. stale .. "\\n")
  io.write("counter checked_reads " .. checked .. "\\n")
end
"""
