"""The storage seam: what the rest of the auditor may do with a destination (read only)."""

from __future__ import annotations

import builtins
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import IO, Any, NamedTuple, Protocol
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
# a query parameter or `name=value` pair whose value is a credential, wherever a library quotes it (gcsfs quotes the
# token-info URL it called, `?access_token=…`, when that call fails)
_SECRET_PAIR = re.compile(
    r"(?i)\b(sig|signature|x-amz-signature|x-goog-signature|x-amz-security-token|x-amz-credential|sas|sas_token|password|passwd|secret|client_secret"
    r"|access_token|refresh_token|id_token|token|api_key|apikey|key|accountkey|sharedaccesssignature)=[^&\s'\";]+"
)
# `user:password@host`; the password may hold a slash (AWS secret keys do)
_USER_INFO = re.compile(r"(^|[\s'\"(\[=,/])([^\s/:@'\"]+):[^\s@'\"/][^\s@'\"]*@")
# option names whose values are credentials (a key file's path or a host-key file is not)
_SECRET_OPTION = re.compile(r"(?i)(key|secret|token|password|passwd|sas|credential|connection_string|signature|private)(?!.*(_filename|_file|_path|known_hosts)$)")
_known: tuple[str, ...] = ()  # credential values this process holds (longest first): replaced wherever they appear
_known_lock = threading.Lock()


def remember_secret(value: Any) -> None:
    """Keep a credential's value (or every string within one) out of all text `scrub` cleans, whatever quotes it:
    pattern matching misses a token a library echoes in its own words. Values shorter than 6 characters are
    left to the patterns (replacing them everywhere would garble messages)."""
    global _known
    values = {v for v in _strings(value) if len(v) >= 6}
    if not values - set(_known):
        return
    with _known_lock:
        _known = tuple(sorted(set(_known) | values, key=len, reverse=True))


def remember_secret_options(options: Mapping[str, Any]) -> None:
    """`remember_secret` for every option whose name says it holds a credential (key, secret, token, sas_url …)."""
    for name, value in options.items():
        if _SECRET_OPTION.search(str(name)):
            remember_secret(value)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def scrub(text: str) -> str:
    """Remove credentials from free text such as an error message that quotes a URL.

    Every credential this process was given (`remember_secret`) is replaced wherever it appears; a value after a
    credential's name (`access_token=…`, `sig=…`) is redacted; and a password wherever `user:password@host`
    appears: after `scheme://`, and also quoted or bare, as libraries echo the part of a URL they took for a
    bucket or host name (s3fs: `Bucket create failed 'KEY:SECRET@bucket'`).
    """
    for value in _known:
        if value in text:  # as a whole token: a password "postgres" is no part of "postgresql://"
            text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", "REDACTED", text)
    text = _SECRET_PAIR.sub(r"\1=REDACTED", text)
    return _USER_INFO.sub(r"\1\2:REDACTED@", text)


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
