"""Listing by name prefix (incremental audits), the same on every backend."""

from __future__ import annotations

import pytest

from auditor.errors import StorageError
from auditor.storage import open_store
from tests.storage.conftest import Backend, missing_root


def test_list_prefixes_gives_exactly_the_objects_under_name_prefixes(backend: Backend) -> None:
    for key in (
        "ds/exportTime=202611270000/part-0.parquet",
        "ds/exportTime=202611270300/part-0.parquet",
        "ds/exportTime=202611270300/manifest-1.json",
        "ds/exportTime=202611280000/part-0.parquet",
        "ds2/exportTime=202611270000/part-0.parquet",
        "ds2/exportTime=202611270300/part-0.parquet",
        "other/stray.txt",
    ):
        backend.put(key, b"x" * 7)
    store = open_store(backend.url, backend.options)

    found = store.list_prefixes(["ds/exportTime=20261127", "ds2/exportTime=202611270300", "ds3/exportTime=20261127"])

    assert [o.key for o in found] == [
        "ds/exportTime=202611270000/part-0.parquet",
        "ds/exportTime=202611270300/manifest-1.json",
        "ds/exportTime=202611270300/part-0.parquet",
        "ds2/exportTime=202611270300/part-0.parquet",
    ]
    assert all(o.size == 7 and o.url == f"{store.url}/{o.key}" for o in found)
    assert {o.key: (o.size, o.etag) for o in store.list()}["ds/exportTime=202611270000/part-0.parquet"] == (found[0].size, found[0].etag)
    assert store.list_prefixes(["nothing-here/"]) == []  # an absent folder below an existing root: nothing landed
    # a prefix that ends in "/" is that folder: ds/ is not ds2/ (a template with a free macro after the dataset gives such prefixes)
    assert [o.key for o in store.list_prefixes(["ds/"])] == [o.key for o in store.list() if o.key.startswith("ds/")]
    assert store.bytes_read == 0


def test_list_prefixes_of_a_root_that_does_not_exist_is_a_storage_error(backend: Backend) -> None:
    missing, options = missing_root(backend)
    with pytest.raises(StorageError):
        open_store(missing, options).list_prefixes(["ds/exportTime=20261127"])


def test_an_object_named_like_a_folder_hides_nothing_below_it(backend: Backend) -> None:
    """A zero-byte object named like a folder (a "folder marker", as some Azure and S3 tools write), at the
    destination's root and at a dataset folder: the objects below each are listed, in full and by prefix."""
    if backend.name in ("file", "sftp-key", "sftp-password"):
        pytest.skip("a file system cannot hold a file and a folder of one name")
    keys = ["ds/exportTime=202611270000/part-0.parquet", "ds/exportTime=202611270300/part-0.parquet", "ds10/exportTime=202611270000/part-0.parquet"]
    for key in keys:
        backend.put(key, b"x" * 7)
    backend.put("ds", b"")  # beside the folder ds/
    backend.writer.pipe_file(backend.write_root, b"")  # beside the root folder itself
    store = open_store(backend.url, backend.options)

    assert [o.key for o in store.list() if o.size] == sorted(keys)
    assert [o.key for o in store.list_prefixes(["ds/exportTime=20261127"])] == keys[:2]
    assert [o.key for o in store.list_prefixes(["ds/"])] == keys[:2]
    assert [o.key for o in store.list_prefixes(["ds/exportTime=202611270300"])] == keys[1:2]
    assert store.bytes_read == 0


def test_a_read_shorter_than_the_listing_is_a_storage_error(backend: Backend) -> None:
    """A file that shrank between the listing and the read (rewritten in place: truncated, then written) gave a quick
    check the bytes there were; its verdict was stored against the listed size, and the unchanged-looking file was
    never read again. A short read is an I/O failure now: the window is unknown and the file is read next audit."""
    backend.put("ds/exportTime=202611270000/part-0.parquet", b"x" * 100)
    store = open_store(backend.url, backend.options)
    [listed] = store.list()
    backend.put("ds/exportTime=202611270000/part-0.parquet", b"x" * 10)  # shorter since it was listed
    with pytest.raises(StorageError, match="changed since it was listed"):
        store.read_range(listed.key, 5, 20)  # the end of it is gone
    with pytest.raises(StorageError):
        store.read_range(listed.key, listed.size - 8, listed.size)  # all of it gone (object stores: 416)
    assert store.read_range(listed.key, 0, 10) == b"x" * 10
