"""Work units for the Dask cluster: grouped by size, every file once; the payload never shows its secrets."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from auditor.cluster import MIN_BATCH_BYTES, Batch, check_batch, plan_batches
from auditor.errors import StorageError
from auditor.storage.base import ObjectInfo
from auditor.validate.sandbox import Limits

MB = 1 << 20


def files(*sizes: int) -> list[ObjectInfo]:
    return [ObjectInfo(f"ds/exportTime=202611270000/part-{i:05d}.gz.parquet", "memory://x", size, None, None) for i, size in enumerate(sizes)]


def sizes(batches: list[tuple[ObjectInfo, ...]]) -> list[list[int]]:
    return [[f.size for f in batch] for batch in batches]


@pytest.mark.parametrize(
    "given, threads, batch_bytes, batch_files, expected",
    [
        ([], 4, 256 * MB, 500, []),
        # a small audit: nothing to spread, one unit (the floor keeps units from being tiny)
        ([2000] * 5, 4, 256 * MB, 500, [[2000] * 5]),
        # a file larger than the target is a unit alone
        ([10_000 * MB, 100 * MB, 100 * MB, 100 * MB], 1, 256 * MB, 500, [[10_000 * MB], [100 * MB], [100 * MB], [100 * MB]]),
        # units come out even: each file, largest first, joins the unit with the fewest bytes
        ([50 * MB, 200 * MB, 100 * MB, 150 * MB], 1, 256 * MB, 500, [[200 * MB, 50 * MB], [150 * MB, 100 * MB]]),
        # at most batch_files files per unit
        ([10] * 5, 1, 256 * MB, 2, [[10, 10], [10, 10], [10]]),
        # an explicit target below the floor is honoured (tests use one file per unit)
        ([10, 10, 10], 1, 1, 500, [[10], [10], [10]]),
    ],
)
def test_files_are_grouped_into_units_by_size(given: list[int], threads: int, batch_bytes: int, batch_files: int, expected: list[list[int]]) -> None:
    assert sizes(plan_batches(files(*given), threads=threads, batch_bytes=batch_bytes, batch_files=batch_files)) == expected


def test_a_mid_sized_audit_gives_every_thread_about_two_units() -> None:
    batches = plan_batches(files(*[4 * MB] * 100), threads=4)  # 400 MiB: a target of 50 MiB
    assert len(batches) == 8
    assert {len(b) for b in batches} == {12, 13}
    assert sorted(f.key for b in batches for f in b) == sorted(f.key for f in files(*[4 * MB] * 100))


def test_units_never_fall_below_the_floor_for_many_small_files() -> None:
    batches = plan_batches(files(*[64 * 1024] * 1000), threads=64)  # 62.5 MiB for 64 threads
    assert len(batches) == 7
    assert all(sum(f.size for f in b) >= MIN_BATCH_BYTES for b in batches)


class Unopenable:
    """A store whose unpickling (opening it on a worker) fails, as a wrong credential would."""

    def __reduce__(self) -> Any:
        return (_refuse, ())


def _refuse() -> None:
    raise StorageError("cannot open s3://bucket: access denied")


def test_a_batch_shows_no_credentials_and_answers_even_when_the_store_cannot_be_opened() -> None:
    batch = Batch(tuple(files(10, 20)), Limits(), "auditor.validate:validate_data_file", pickle.dumps(Unopenable()) + b"secret=hunter2")

    assert "hunter2" not in repr(batch) and repr(batch) == "Batch(2 files, 30 bytes)"
    answers, read = check_batch(batch)
    assert read == 0
    assert answers == [(f.key, "cannot open s3://bucket: access denied") for f in batch.files]
    garbled = Batch(batch.files, Limits(), "auditor.validate:validate_data_file", b"not a pickle")
    assert all(reason.startswith("the destination cannot be opened on a Dask worker") for _, reason in check_batch(garbled)[0])
