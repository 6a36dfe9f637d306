"""FsspecStore: the one Store implementation, over any fsspec filesystem."""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import urlsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem

from auditor.errors import StorageError
from auditor.storage.backends import Limits, backend_options, limits_of
from auditor.storage.base import ObjectInfo, redact, remember_secret_options, scrub


class FsspecStore:
    """Read-only access to one destination root; counts the bytes it reads.

    Picklable: a validation worker process rebuilds the same store from its URL and options.
    """

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        remember_secret_options(options)  # (in a validation worker too: it rebuilds the store here)
        self._spec = (url, options)
        self.url = redact(url).rstrip("/")
        # what the last listing passed over, by key: symbolic links (a file system's or an SFTP server's; the auditor
        # audits what is stored under the destination, and a link may point anywhere) and FIFOs, sockets, devices
        self.skipped: builtins.list[tuple[str, str]] = []
        self._bytes_read = 0
        self._lock = threading.Lock()
        protocol = url.split("://", 1)[0].lower() if "://" in url else "file"
        try:
            fs_options, attributes, hook = backend_options(protocol, options)
            self._fs, root = _connect(url, fs_options, protocol, limits_of(options))
            for name, value in attributes.items():
                setattr(self._fs, name, value)
            if hook is not None:
                hook(self._fs)
        except StorageError as e:
            raise StorageError(f"cannot open {self.url}: {e}", url=self.url) from e
        except Exception as e:
            raise StorageError(f"cannot open {self.url}: {_describe(e)}", url=self.url) from e
        self._root = str(root).rstrip("/")
        # paramiko's SFTP client is not thread-safe: one request at a time per connection
        self._serial: Any = threading.Lock() if protocol == "sftp" else contextlib.nullcontext()
        self._walks = protocol in ("sftp", "file", "local")  # listed folder by folder, not in one flat listing
        self.local = protocol in ("file", "local")  # reads cost a system call, not a round trip: validation workers read for themselves

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self._spec}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(*state["spec"])  # type: ignore[misc]

    @property
    def walks(self) -> bool:
        """Whether listing walks folder by folder (file system, SFTP) rather than paging a flat key space."""
        return self._walks

    @property
    def account_endpoint(self) -> str | None:
        """The blob endpoint of the Azure storage account this store reads (scheme://host/path, never a SAS query),
        whatever the credentials named it by; None for other stores."""
        url = getattr(getattr(self._fs, "service_client", None), "url", None)
        if not isinstance(url, str):
            return None
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}".rstrip("/")

    @property
    def bytes_read(self) -> int:
        return self._bytes_read

    def count(self, size: int) -> None:
        """Add bytes read on this store's behalf (by this process or a validation worker)."""
        with self._lock:
            self._bytes_read += size

    def list(self, prefix: str = "", *, intern: Callable[[str], str] | None = None) -> list[ObjectInfo]:
        """Every object below the root (or below `prefix` under it), from one recursive listing. `intern`: the
        string each listed key is held as (an equal string the caller already holds, to share it)."""
        base = f"{self._root}/{prefix.strip('/')}" if prefix.strip("/") else self._root

        def find() -> Iterable[tuple[str, dict[str, Any]]]:
            if self._walks:
                return self._walk(base)
            return self._find(base).items()  # object stores: one flat, paged listing

        return self._listing(find, intern)

    def list_prefixes(self, prefixes: Sequence[str]) -> builtins.list[ObjectInfo]:
        """Every object whose key starts with one of `prefixes` (name prefixes: `ds/exportTime=20261130`
        holds every folder of that day), with one listing request per prefix on an object store and one
        directory listing per parent folder on a file system or SFTP server."""
        by_parent: dict[str, set[str]] = {}
        for prefix in prefixes:
            parent, _, name = prefix.lstrip("/").rpartition("/")  # "ds1/" is the folder ds1 (not ds10): parent ds1, every name
            by_parent.setdefault(parent.rstrip("/"), set()).add(name)

        def find() -> Iterable[tuple[str, dict[str, Any]]]:
            found: dict[str, dict[str, Any]] = {}  # a key under two prefixes is one object
            for parent, names in sorted(by_parent.items()):
                base = f"{self._root}/{parent}" if parent else self._root
                if self._walks:
                    found.update(self._walk_matching(base, names))
                else:
                    for name in sorted(names):
                        found.update(self._find(base, name))
            return found.items()

        return self._listing(find)

    def _listing(self, find: Callable[[], Iterable[tuple[str, dict[str, Any]]]], intern: Callable[[str], str] | None = None) -> builtins.list[ObjectInfo]:
        """Run one listing: serialised where the connection needs it, checked for a dropped SFTP connection
        and a root that is not there, every failure a StorageError. The entries are turned into objects as
        they come (a walk's folder by folder), so fsspec's description of every file is never all held at once."""
        try:
            with self._serial:
                # a listing is a look at the store now: fsspec keeps one filesystem per set of options for the life of
                # the process, and gcsfs answered "is the root there?" from what an earlier audit listed, so a bucket
                # gone (or a server down) with every window settled (nothing to list) was no error at all
                self._fs.invalidate_cache()
                self.skipped = []
                objects = self._objects(find(), intern)
                if self._walks:
                    self._check_connection()
                missing = not objects and not self._root_exists()
            if missing:
                raise StorageError(f"{self.url} does not exist or cannot be listed", url=self.url)
        except StorageError:
            raise
        except FileNotFoundError as e:
            raise StorageError(f"{self.url} does not exist or cannot be listed: {_describe(e)}", url=self.url) from e
        except Exception as e:
            raise StorageError(f"cannot list {self.url}: {_describe(e)}", url=self.url) from e
        return objects

    def _find(self, base: str, prefix: str = "") -> dict[str, dict[str, Any]]:
        """Every object below `base` whose name there starts with `prefix`, from an object store's flat listing.

        adlfs answers a `base` that is itself a blob (a zero-byte "folder marker" named like the folder, as some
        Azure tools write) with that one name, whatever lies below it: the objects below it are then listed from its
        parent, by name (the marker itself is not below `base`, and `_key` leaves it out where it is the root)."""
        found = self._fs.find(base, prefix=prefix, detail=True) if prefix else self._fs.find(base, detail=True)
        if isinstance(found, dict):
            return found
        parent, _, name = base.rstrip("/").rpartition("/")
        if not parent or not name:
            raise StorageError(f"cannot list {self.url}: the listing of {base!r} named no objects", url=self.url)
        below = f"{base.strip('/')}/{prefix}"  # the parent's listing by name also holds its siblings that start alike (ds10 beside ds1)
        return {k: v for k, v in self._find(parent, f"{name}/{prefix}").items() if k.strip("/").startswith(below)}

    def _walk(self, base: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every file below folder `base`, one `ls` per folder, yielded folder by folder. A folder that cannot be
        listed, at any depth, fails the walk: fsspec's own walk applies on_error="raise" to the top folder only
        and leaves out a deeper one it cannot list, and a partial listing would report its files as missing."""
        pending = [base.rstrip("/")]
        while pending:
            folder = pending.pop()
            for info in self._fs.ls(folder, detail=True):
                name = str(info["name"]).rstrip("/")
                if info.get("type") == "directory":
                    if name != folder:
                        pending.append(name)
                else:
                    yield name, info

    def _walk_matching(self, base: str, names: set[str]) -> dict[str, dict[str, Any]]:
        """The files below the entries of folder `base` whose names start with one of `names` (one `ls` of `base`)."""
        try:
            entries = self._fs.ls(base, detail=True)
        except FileNotFoundError:
            return {}  # the folder is not there: nothing landed under it
        found: dict[str, dict[str, Any]] = {}
        for entry in entries:
            entry_name = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
            if not any(entry_name.startswith(n) for n in names):
                continue
            if entry.get("type") == "directory":
                found.update(self._walk(entry["name"]))
            else:
                found[entry["name"]] = entry
        return found

    def _objects(self, found: Iterable[tuple[str, dict[str, Any]]], intern: Callable[[str], str] | None = None) -> builtins.list[ObjectInfo]:
        objects = []
        for name, info in found:
            kind = info.get("type", "file")
            if kind != "file":
                if kind != "directory" and (key := self._key(name)) is not None:  # said in the report, not dropped in silence
                    self.skipped.append((key, "a symbolic link" if info.get("islink") or kind == "link" else f"not a regular file ({kind})"))
                continue
            key = self._key(name)
            if key is None:
                continue
            if intern is not None:
                key = intern(key)
            objects.append(ObjectInfo(key, self.url, int(info.get("size") or 0), _modified(info), _etag(info)))
        objects.sort(key=lambda o: o.key)
        return objects

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of one object, in one ranged request."""
        try:
            if self.local:  # what LocalFileSystem.cat_file does, without its file object's layers (a quick check reads thousands of small files)
                data = _read_local(self._path(key), start, end)
            else:
                with self._serial:
                    data = bytes(self._fs.cat_file(self._path(key), start=start, end=end))
        except Exception as e:
            raise StorageError(f"cannot read {self.url}/{key}: {_describe(e)}", url=self.url) from e
        self.count(len(data))
        if len(data) < end - start:  # shorter than listed: it changed while the audit read it (a verdict would be on bytes nobody listed)
            raise StorageError(f"cannot read {self.url}/{key}: {len(data)} of the {end - start} bytes at {start} came back: it changed since it was listed", url=self.url)
        return data

    def open(self, key: str) -> IO[bytes]:
        """A streaming binary reader of one object; its reads count towards `bytes_read`."""
        try:
            with self._serial:
                handle = self._fs.open(self._path(key), "rb")
        except Exception as e:
            raise StorageError(f"cannot open {self.url}/{key}: {_describe(e)}", url=self.url) from e
        return io.BufferedReader(_CountingReader(handle, self, key), buffer_size=1 << 20)

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def _key(self, name: str) -> str | None:
        name = name.rstrip("/")
        root = self._root.lstrip("/") if not isinstance(self._fs, LocalFileSystem) else self._root
        candidate = name if isinstance(self._fs, LocalFileSystem) else name.lstrip("/")
        if root and not candidate.startswith(root + "/"):
            return None
        return candidate[len(root) + 1 :] if root else candidate

    def _check_connection(self) -> None:
        """SFTP: paramiko ends a directory listing quietly when the connection drops (it reads the
        EOF as "no more entries"), so a dead transport after listing means the listing may be partial."""
        client = getattr(self._fs, "client", None)
        transport = client.get_transport() if client is not None else None
        if client is not None and (transport is None or not transport.is_active()):
            raise StorageError(f"cannot list {self.url}: the connection was lost during the listing, which may be partial", url=self.url)

    def _root_exists(self) -> bool:
        if self._fs.exists(self._root):
            return True
        if isinstance(self._fs, LocalFileSystem) or self._fs.protocol in ("sftp", "ssh"):
            return False
        # object stores have no empty folders: an existing bucket with no objects yet is fine
        bucket = self._root.split("/", 1)[0]
        if not bucket or bucket == self._root:
            return False
        protocols = self._fs.protocol if isinstance(self._fs.protocol, tuple) else (self._fs.protocol,)
        if {"abfs", "az", "abfss"} & set(protocols):
            # adlfs "assumes it exists" when it cannot read a container's properties, as with a container SAS (the Data
            # Landing Zone's) once the container is gone; listing the container tells
            try:
                self._fs.ls(bucket, detail=False)
            except FileNotFoundError:
                return False
            return True
        return bool(self._fs.exists(bucket))


def _connect(url: str, fs_options: dict[str, Any], protocol: str, limits: Limits) -> tuple[Any, str]:
    """The filesystem for a URL. SFTP connects here: a network error (refused, timed out, reset) is
    tried `retries` more times; a refused host key or a failed login is not."""
    attempts = limits.retries + 1 if protocol == "sftp" else 1
    for attempt in range(attempts):
        try:
            fs, root = fsspec.core.url_to_fs(url, **fs_options)
            return fs, str(root)
        except OSError:
            if attempt + 1 == attempts:
                raise
            time.sleep(min(0.5 * 2**attempt, 4.0))
    raise AssertionError("unreachable")


class _CountingReader(io.RawIOBase):
    def __init__(self, handle: Any, store: FsspecStore, key: str) -> None:
        self._handle, self._store, self._key = handle, store, key

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self._handle.seek(offset, whence)  # paramiko's SFTP files return None here, not the position
        return int(self._handle.tell())

    def tell(self) -> int:
        return int(self._handle.tell())

    def readinto(self, buffer: Any) -> int:
        try:
            with self._store._serial:
                data = self._handle.read(len(buffer))
        except Exception as e:
            raise StorageError(f"cannot read {self._store.url}/{self._key}: {_describe(e)}", url=self._store.url) from e
        buffer[: len(data)] = data
        self._store.count(len(data))
        return len(data)

    def close(self) -> None:
        try:
            self._handle.close()
        finally:
            super().close()


def _modified(info: dict[str, Any]) -> datetime | None:
    for field in ("LastModified", "last_modified", "updated", "mtime", "time"):
        value = info.get(field)
        if value is None:
            continue
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                continue
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return None


def _etag(info: dict[str, Any]) -> str | None:
    for field in ("ETag", "etag", "md5Hash", "crc32c"):
        value = info.get(field)
        if value:
            return str(value).strip('"')
    settings = info.get("content_settings")
    md5 = getattr(settings, "content_md5", None) if settings is not None else None
    if md5:
        return bytes(md5).hex()
    return None


def _describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return scrub(text)[:500]


def _read_local(path: str, start: int, end: int) -> bytes:
    """Bytes [start, end) of a local regular file. Opened without blocking and checked to be a regular file:
    a FIFO or device put where a listed file was would otherwise hold the read (and the audit) forever."""
    handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (it was one when listed)")
        chunks, position = [], start
        while position < end:
            chunk = os.pread(handle, end - position, position)
            if not chunk:
                break  # the end of the file
            chunks.append(chunk)
            position += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(handle)
