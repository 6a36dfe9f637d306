"""What a quick audit reads: the footers, learned per dataset, and nothing else."""

from __future__ import annotations

import contextlib
import io
import struct
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditor.audit import InProcessChecker, run_audit
from auditor.config import Settings, settings_from_mapping
from auditor.storage import open_store
from auditor.storage.base import ObjectInfo
from auditor.validate import MAX_FOOTER
from auditor.validate.sandbox import ObjectSource, Sandbox
from tests.conftest import Tree, t


def daily_parquet(tree: Tree) -> Settings:
    """One daily gzip-Parquet export of dataset `ds` in `tree`."""
    return settings_from_mapping(
        {
            "destinations": [{"name": "d", "url": tree.url}],
            "exports": [{"name": "e", "destination": "d", "datasets": ["ds"], "format": "parquet", "schedule": {"timeUnit": "day", "interval": 1, "startTime": "2026-11-27T00:00:00Z"}}],
        },
        {},
    )


@pytest.mark.parametrize("isolated", [False, True], ids=["in process", "validation workers"])
def test_quick_checks_read_little_more_than_each_footer(tree: Tree, isolated: bool) -> None:
    """In process, the check reads exactly the footer; a validation worker reading a local file learns
    the dataset's footer size from its first file, as the audit does for remote stores."""
    files = 40
    sizes = []
    for variant in range(4):  # four footer sizes, as files of one dataset differ a little
        table = pa.table({f"col{c}": [i * c % 977 for i in range(5000)] for c in range(12 + variant)})
        out = io.BytesIO()
        pq.write_table(table, out, compression="gzip", row_group_size=2000)
        sizes.append(out.getvalue())
    for index in range(files):
        data = sizes[index % 4]
        tree.put(f"ds/exportTime=202611270000/part-{index:05d}-c000.gz.parquet", data, t("2026-11-27T00:10"))
    settings = daily_parquet(tree)
    store = open_store(tree.url)
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)

    with Sandbox(workers=1) if isolated else nullcontext(InProcessChecker()) as checker:
        report = run_audit(settings, stores={"d": store}, catalog=None, now=now, started=now, checker=checker)

    assert report.exports[0].windows[0].status.value == "ok"
    footers = sum(struct.unpack("<I", sizes[i % 4][-8:-4])[0] + 8 for i in range(files))
    whole = sum(len(sizes[i % 4]) for i in range(files))
    assert store.bytes_read < 64 * 1024 + 1.25 * footers + files * 300  # one blind 64 KiB read, then learned sizes
    assert store.bytes_read < whole / 10  # footers here are about 5 % of each file


def test_a_data_file_turned_into_a_fifo_after_the_listing_is_unknown_at_once(tree: Tree) -> None:
    """A reader blocks on a FIFO until someone writes to it: put where a listed file was (a concurrent
    writer, a hostile tree), it must cost a read error (the window unknown), not the validation deadline."""
    import os
    import time

    paths = tree.export("ds", t("2026-11-27T00:00"), count=20)
    victim = next(p for p in paths if p.name.endswith(".parquet"))
    settings = daily_parquet(tree)
    store = open_store(tree.url)
    listed = store.list

    def list_then_swap() -> list[ObjectInfo]:
        found = listed()
        victim.unlink()
        os.mkfifo(victim)
        return found

    store.list = list_then_swap  # type: ignore[method-assign]
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    started = time.monotonic()
    try:
        with Sandbox(workers=1) as checker:
            report = run_audit(settings, stores={"d": store}, catalog=None, now=now, started=now, checker=checker)
    finally:
        with contextlib.suppress(OSError):  # a reader stuck on the FIFO (the defect) gets its end of file
            os.close(os.open(victim, os.O_WRONLY | os.O_NONBLOCK))
    assert time.monotonic() - started < 30  # the validation deadline is 60 s and more
    assert report.exports[0].windows[0].status.value == "unknown"
    assert any("not a regular file" in e.message for e in report.errors), report.errors


def test_a_footer_length_past_the_limit_teaches_no_read_size(tmp_path: Path) -> None:
    """What a quick check fetches of the next file is learned from this one's footer: a file that announces
    a footer larger than any real one (a hostile tail) must not make the next read that large."""
    store = open_store(tmp_path.as_uri())
    size = 8 << 30  # a sparse or huge file: the announced footer fits inside it

    def tail_after(announced: int) -> int | None:
        trailer = struct.pack("<I", announced) + b"PAR1"
        source = ObjectSource(store, ObjectInfo("ds/exportTime=202611270000/part-0.parquet", "file:///x", size, None, None), ((size - 8, trailer),))
        return source.footer_tail()

    assert tail_after(40_000) == 40_000 + 8 + 40_000 // 8 + 256
    assert tail_after(MAX_FOOTER) is not None
    assert tail_after(MAX_FOOTER + 1) is None
    assert tail_after(0xFFFFFF00) is None
