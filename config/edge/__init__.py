"""The HTTP edge of a web replica: what a request meets before and around the views.

The WSGI gateway (rate limits and cached reads answered without Django), the response cache's
Redis store and its one-round-trip Lua gate, the rate limits, the Redis circuit breaker, the
request-body limit, HTTP caching (ETags, conditional requests, the cached response's headers),
the registry of routes whose reads the gateway may answer, and around them all the request
telemetry (every response's request id, metrics and log line).
"""
