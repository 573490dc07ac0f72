"""HTTP caching: entity tags, the conditional headers `If-None-Match` and `If-Match`, and the
cached response with the headers it is served with.

The gateway (a hit answered from Redis) and the view (a miss, or a hit Django had to answer)
both build their answer from a `CachedResponse` here, so a cached read carries the same `ETag`,
`Link` and `X-Cache` headers and the same 304 decision whoever serves it.
"""

import hashlib
from dataclasses import dataclass

# Ten bytes of BLAKE2b: 80 bits, so two versions of one resource never share a tag in practice,
# in a header of 22 characters.
ETAG_DIGEST_SIZE = 10

# Stored layout: ETag, Link, then the body, split by NUL (which JSON text never contains raw).
SEPARATOR = b"\x00"


def version_etag(version: str) -> str:
    """A strong ETag for a version string, e.g. a row's id and last-modified time."""
    return body_etag(version.encode())


def body_etag(body: bytes) -> str:
    """A strong ETag for exactly these bytes."""
    return '"' + hashlib.blake2b(body, digest_size=ETAG_DIGEST_SIZE).hexdigest() + '"'


def parse_etags(header: str | None) -> list[str]:
    """The entity tags of an If-Match/If-None-Match header ("*" stays "*")."""
    if not header:
        return []
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def none_match(header: str | None, etag: str) -> bool:
    """True when `If-None-Match` names this representation (weak comparison): answer 304."""
    tags = parse_etags(header)
    bare = etag.removeprefix("W/")
    return "*" in tags or any(tag.removeprefix("W/") == bare for tag in tags)


def match(header: str | None, etag: str) -> bool:
    """True when `If-Match` is absent or names the current version (strong comparison)."""
    tags = parse_etags(header)
    return not tags or "*" in tags or etag in tags


@dataclass(frozen=True)
class CachedResponse:
    """A rendered JSON read: its ETag, the next page's URL ("" for none) and the body."""

    etag: str
    link: str
    body: bytes

    def entity_headers(self) -> list[tuple[str, str]]:
        """`ETag`, and `Link: <next>; rel="next"` when there is a next page."""
        headers = [("ETag", self.etag)]
        if self.link:
            headers.append(("Link", f'<{self.link}>; rel="next"'))
        return headers

    def headers(self, outcome: str) -> list[tuple[str, str]]:
        """The entity headers and `X-Cache: <outcome>` (hit, miss, bypass, uncached)."""
        return [*self.entity_headers(), ("X-Cache", outcome)]

    def not_modified(self, if_none_match: str | None) -> bool:
        """True when the client already holds this representation: answer 304 without a body."""
        return none_match(if_none_match, self.etag)

    def pack(self) -> bytes:
        return SEPARATOR.join((self.etag.encode(), self.link.encode(), self.body))

    @classmethod
    def unpack(cls, raw: bytes) -> "CachedResponse":
        etag, link, body = raw.split(SEPARATOR, 2)
        return cls(etag.decode(), link.decode(), body)
