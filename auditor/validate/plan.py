"""Work units by size: files grouped so that parallel workers finish together (pure)."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from auditor.storage.base import ObjectInfo

MIN_BATCH_BYTES = 8 << 20  # smaller units only add scheduling overhead


def plan_batches(
    files: Sequence[ObjectInfo], *, threads: int, batch_bytes: int, batch_files: int, min_batch_bytes: int = MIN_BATCH_BYTES
) -> list[tuple[ObjectInfo, ...]]:
    """Group files into work units of about equal size, the largest unit first.

    Units hold at most about `batch_bytes` and `batch_files` files; a smaller audit is still cut
    into about two units per worker thread (`threads`), as long as a unit keeps `min_batch_bytes`.
    The units are filled largest file first, each file into the unit with the fewest bytes so
    far: a file larger than `batch_bytes` ends up alone, and the units come out even.
    """
    if not files:
        return []
    total = sum(f.size for f in files)
    limit = max(1, batch_files)
    by_size = -(-total // max(1, batch_bytes))
    spread = min(2 * threads, total // max(1, min_batch_bytes))  # about two units per thread, none below the floor
    count = min(len(files), max(1, by_size, spread, -(-len(files) // limit)))
    units: list[list[ObjectInfo]] = [[] for _ in range(count)]
    open_units = [(0, index) for index in range(count)]  # (bytes so far, unit) of units with room left
    heapq.heapify(open_units)
    for info in sorted(files, key=lambda f: (-f.size, f.key)):
        size, index = heapq.heappop(open_units)
        units[index].append(info)
        if len(units[index]) < limit:
            heapq.heappush(open_units, (size + info.size, index))
    filled = [tuple(unit) for unit in units if unit]
    return sorted(filled, key=lambda unit: (-sum(f.size for f in unit), unit[0].key))
