"""The storage seam: what the rest of the auditor may do with a destination (read only)."""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import IO, NamedTuple, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class ObjectInfo(NamedTuple):
    """One object as the listing returned it.

    `key` is relative to the destination root `root` (the store's redacted URL, one string shared by every object
    of a listing); `url` is the full URL, made when asked for (held per object, it was a third of a listing's memory).

    A named tuple: a listing makes a million of them, and a tuple is made in 0.72 µs against 1.73 µs as a frozen
    dataclass (which sets each field through object.__setattr__), for 8 bytes more; it pickles as its fields
    (validation workers receive thousands).
    """

    key: str
    root: str
    size: int
    modified: datetime | None
    etag: str | None

    @property
    def url(self) -> str:
        return f"{self.root}/{self.key}"

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


class Store(Protocol):
    """A destination, read only: one recursive listing, ranged reads and streaming reads.

    Every method raises StorageError (with a redacted URL) when the store cannot answer.
    """

    url: str

    @property
    def bytes_read(self) -> int: ...

    def count(self, size: int) -> None: ...

    def list(self, prefix: str = "", *, intern: Callable[[str], str] | None = None) -> list[ObjectInfo]: ...

    def list_prefixes(self, prefixes: Sequence[str]) -> builtins.list[ObjectInfo]: ...

    def read_range(self, key: str, start: int, end: int) -> bytes: ...

    def open(self, key: str) -> IO[bytes]: ...


_SECRET_QUERY_KEYS = {"sig", "signature", "x-amz-signature", "x-goog-signature", "sas", "sas_token", "token", "key", "secret", "password"}


def scrub(text: str) -> str:
    """Remove credentials from free text such as an error message that quotes a URL.

    A password is redacted wherever `user:password@host` appears: after `scheme://`, and also
    quoted or bare, as libraries echo the part of a URL they took for a bucket or host name
    (s3fs: `Bucket create failed 'KEY:SECRET@bucket'`).
    """
    text = re.sub(r"(?i)\b(sig|signature|x-amz-signature|x-goog-signature|sas_token|password|secret)=[^&\s'\"]+", r"\1=REDACTED", text)
    return re.sub(r"(^|[\s'\"(\[=,/])([^\s/:@'\"]+):[^/\s@]+@", r"\1\2:REDACTED@", text)


def redact(url: str) -> str:
    """Drop passwords in the user-info part and signature-like query values from a URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"(sig|signature)=[^&\s]+", r"\1=REDACTED", url, flags=re.IGNORECASE)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:REDACTED@{host}" if ":" in userinfo else f"{user}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "REDACTED" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
