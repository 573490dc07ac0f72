"""OpenAPI post-processing: every operation documents the errors it can answer.

drf-spectacular describes the success responses of each view; the error answers come from
shared layers (authentication, parsing, the body-size limit, the gateway's rate limits,
conditional requests), so they are added here once, with the project's error body.
"""

ERROR_SCHEMA = {
    "type": "object",
    "description": '{"detail": "..."} or {"<field>": ["message", ...]} naming each bad field',
    "additionalProperties": True,
}

REASONS = {
    "304": "Not modified: the `If-None-Match` ETag is current (no body)",
    "400": "Bad input; the body names each bad field or query parameter",
    "401": "No token, or an unknown, expired or revoked one",
    "404": "No such resource for this user",
    "405": "Method not allowed",
    "409": "Conflict with the resource's state",
    "412": "`If-Match` names an old version; nothing changed",
    "413": "Body larger than 1 MiB",
    "415": "Body is not application/json",
    "422": "`Idempotency-Key` reused with a different body",
    "429": "Over a rate limit; `Retry-After` says when to retry",
}

# Sign-up and login take no token; logout does.
PUBLIC_PATHS = ("/api/auth/register", "/api/auth/token")


def error_codes(path: str, method: str, has_body: bool = True) -> list[str]:
    codes = ["429"]
    if not path.startswith(PUBLIC_PATHS):
        codes.append("401")
    if method in {"post", "put", "patch"}:
        # A bad Content-Length is a 400 and a huge one a 413 on any path; only an operation
        # that reads a body can find it is not JSON.
        codes += ["400", "413", "415"] if has_body else ["400", "413"]
    if method == "get" and not path.endswith("/download/"):
        codes.append("400")  # query parameters
    if "{id}" in path:
        codes.append("404")
    if path.startswith("/api/todos/"):
        if method == "get":
            codes.append("304")
        if "{id}" in path and method in {"put", "patch", "delete"}:
            codes.append("412")
        if method == "post":
            codes.append("422")
    return codes


def add_error_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for code in error_codes(path, method, "requestBody" in operation):
                if code in responses:
                    continue
                if code == "304":
                    responses[code] = {"description": REASONS[code]}
                else:
                    responses[code] = {
                        "description": REASONS[code],
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    }
    return result
