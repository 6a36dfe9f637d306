"""Mutation fuzzing: 4,000 damaged Parquet, gzip and NDJSON inputs through the isolated validators
(the same ones every run: the examples are derandomized), and arbitrary bytes and manifests in process.

No input may crash or hang the auditor: every verdict is a pass or findings. A reader crash inside
a worker is allowed (it becomes a `validate.crashed` finding); an unexpected exception in our own
validation code (`validate.failed`) is a bug.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor.validate import FileVerdict, validate_data_file
from auditor.validate.manifest import parse_manifest
from auditor.validate.sandbox import BytesSource, Limits, Sandbox
from tests.validation.corpus import valid_ndjson, valid_parquet

SEEDS = {
    "p.gz.parquet": [valid_parquet(120, "gzip"), valid_parquet(40, "gzip", checksums=False)],
    "p.parquet": [valid_parquet(80, "none"), valid_parquet(60, "snappy"), valid_parquet(60, "zstd")],
    "p.json.gz": [gzip.compress(valid_ndjson(40), mtime=0), gzip.compress(valid_ndjson(5), mtime=0) + gzip.compress(valid_ndjson(5), mtime=0)],
    "p.json": [valid_ndjson(30)],
}
NAMES = sorted(SEEDS)
BATCH = 10
EXAMPLES = 400  # x BATCH = 4,000 inputs


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=4, limits=Limits(memory_bytes=1 << 30, timeout_seconds=20)) as pool:
        yield pool


mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True), st.just(0)),
    st.tuples(st.just("insert"), st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.floats(0, 1, exclude_max=True), st.integers(1, 64)),
    st.tuples(st.just("repeat"), st.floats(0, 1, exclude_max=True), st.integers(1, 64)),
    st.tuples(st.just("tail"), st.floats(0, 1, exclude_max=True), st.integers(1, 32)),
)


def mutate(data: bytes, plan: list[tuple[str, float, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in plan:
        if not out:
            break
        at = int(where * len(out))
        if kind == "flip":
            out[at] ^= value
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = bytes([value]) * (1 + value % 7)
        elif kind == "delete":
            del out[at : at + value]
        elif kind == "repeat":
            out[at:at] = out[at : at + value]
        elif kind == "tail":  # aim at the footer and the gzip trailer, where structure lives
            out[-min(value, len(out))] ^= 0xA5
    return bytes(out)


inputs = st.lists(st.tuples(st.sampled_from(NAMES), st.integers(0, 4), st.lists(mutation, min_size=1, max_size=4)), min_size=BATCH, max_size=BATCH)


def check_verdict(verdict: FileVerdict) -> None:
    assert isinstance(verdict, FileVerdict)
    assert all(f.code != "validate.failed" for f in verdict.findings), verdict.findings
    assert all(f.code != "validate.timeout" for f in verdict.findings), verdict.findings
    if verdict.ok and verdict.records is not None:
        assert verdict.records >= 0


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(batch=inputs)
def test_mutated_inputs_give_findings_never_crashes(sandbox: Sandbox, batch: list[tuple[str, int, list[tuple[str, float, int]]]]) -> None:
    jobs = []
    for name, seed, plan in batch:
        seeds = SEEDS[name]
        jobs.append((name, mutate(seeds[seed % len(seeds)], plan)))
    with ThreadPoolExecutor(4) as pool:
        verdicts = list(pool.map(lambda job: sandbox.check(BytesSource(job[1]), job[0], deep=True), jobs))
    for verdict in verdicts:
        check_verdict(verdict)


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(data=st.binary(max_size=512), name=st.sampled_from(NAMES))
def test_arbitrary_bytes_in_process_never_raise(data: bytes, name: str) -> None:
    check_verdict(validate_data_file(BytesSource(data), name, deep=True))


@settings(max_examples=600, deadline=None, derandomize=True, database=None)  # generating nested JSON costs Hypothesis ~6 ms an example, parsing it ~0.1 ms
@given(data=st.one_of(st.binary(max_size=300), st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20), lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(["flowRunId", "scheduledTime", "exportResults", "name", "size", "sinkPath"]), c, max_size=4)).map(lambda v: __import__("json").dumps(v).encode())))
def test_arbitrary_manifests_parse_or_give_findings(data: bytes) -> None:
    manifest, findings = parse_manifest(data, "mem://m")
    assert (manifest is not None) or findings
