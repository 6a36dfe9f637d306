"""`auditor evidence …`: prove that a report is the one the catalog recorded, check the hash
chain of audit records, and export a period's evidence as one archive."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from dataclasses import replace
from datetime import UTC
from pathlib import Path
from typing import Any

import click

from auditor import __version__
from auditor.clikit import CONFIG_OPTION, err, guarded, runtime, when
from auditor.errors import CatalogError
from auditor.evidence import (
    GENESIS,
    ChainedRecord,
    ChainProblem,
    canonical,
    check_chain,
    first_difference,
    iso_time,
    parse_time,
    record_from_json,
    record_json,
    sha256,
)
from auditor.evidence_html import embedded_report, render_evidence


@click.group()
def evidence() -> None:
    """Tamper evidence for reports and audit records."""


@evidence.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@CONFIG_OPTION
@guarded
def evidence_verify(file: str, config_path: str | None) -> None:
    """Whether FILE (an evidence page or a JSON report) is exactly what the catalog recorded; exit 0 yes, 1 no."""
    data = Path(file).read_bytes()
    text = data.decode("utf-8", errors="replace")
    is_page = text.lstrip().lower().startswith("<!doctype html")
    report = embedded_report(text) if is_page else _json(text)
    if report is None:
        raise click.UsageError(f"{file} is neither an evidence page nor a JSON report")
    with runtime(config_path) as rt:
        catalog = rt.catalog
        audit = catalog.find_report(sha256(canonical(report)))
        if audit is None:
            candidates = [a for a in catalog.audits(10_000) if a.as_of.strftime("%Y-%m-%dT%H:%M:%SZ") == report.get("as_of")]
            recorded = catalog.audit_report(candidates[0].id) if candidates else None
            where = f"; {_json_difference(report, recorded)} (audit {candidates[0].id})" if recorded is not None else "; no audit as of that time is recorded"
            click.echo(f"NOT VERIFIED: the catalog recorded no report with this content{where}")
            sys.exit(1)
        recorded = catalog.audit_report(audit.id) or {}
        # the report is what the catalog stored; that is evidence only while the record that names it holds in the chain
        broken = [p for p in check_chain(catalog.chain_records(with_reports=False), catalog.chain_head(), head_kept=True) if p.audit_id == audit.id]
    if broken:
        click.echo(f"NOT VERIFIED: the report matches what audit {audit.id} stored, but that audit's record does not hold: {broken[0].message} "
                   "(`auditor evidence chain` says more)")
        sys.exit(1)
    if is_page:
        expected = render_evidence(recorded, audit_id=audit.id).encode()
        if expected != data:
            offset, line, column = first_difference(data, expected)
            click.echo(f"NOT VERIFIED: the report inside matches audit {audit.id}, but the page was changed at line {line}, column {column} (byte {offset})")
            sys.exit(1)
    click.echo(f"VERIFIED: audit {audit.id} as of {report.get('as_of')}, report SHA-256 {audit.report_sha256}")


@evidence.command("chain")
@click.option("--archive", type=click.Path(exists=True, dir_okay=False), help="check the chain records of an `evidence export` archive instead (no catalog needed)")
@CONFIG_OPTION
@guarded
def evidence_chain(archive: str | None, config_path: str | None) -> None:
    """Check the hash chain of every audit record and its stored report; exit 0 intact, 1 broken."""
    extra: list[ChainProblem] = []
    if archive is not None:
        records, after, extra = _archived_chain(archive)
        head = None
    else:
        after = GENESIS
        with runtime(config_path) as rt:
            records = rt.catalog.chain_records()
            head = rt.catalog.chain_head()
    problems = sorted([*check_chain(records, head, after=after, head_kept=archive is None), *extra], key=lambda p: p.audit_id)
    for problem in problems:
        click.echo(f"BROKEN at audit {problem.audit_id}: {problem.message}")
    if problems:
        sys.exit(1)
    click.echo(f"INTACT: {len(records)} audit records" + (f", the newest {records[-1].record_sha256}" if records else ""))


@evidence.command("export")
@click.option("--from", "start", required=True, help="first as-of time to include")
@click.option("--to", "end", required=True, help="last as-of time to include")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="the .zip archive to write")
@CONFIG_OPTION
@guarded
def evidence_export(start: str, end: str, output: str, config_path: str | None) -> None:
    """The reports, evidence pages and chain records of every audit as of --from … --to, as one archive."""
    low, high = when(start, "--from"), when(end, "--to")
    with runtime(config_path) as rt:
        catalog = rt.catalog
        chosen = sorted((a for a in catalog.audits(1_000_000) if low <= a.as_of <= high), key=lambda a: a.id)
        chain = catalog.chain_records(with_reports=False)
        files: dict[str, bytes] = {}
        for audit in chosen:
            try:
                report = catalog.audit_report(audit.id)
            except CatalogError:
                report = None
            if report is None:
                continue
            files[f"audits/{audit.id:08d}/report.json"] = canonical(report)
            files[f"audits/{audit.id:08d}/evidence.html"] = render_evidence(report, audit_id=audit.id).encode()
            files[f"audits/{audit.id:08d}/windows.csv"] = _windows_csv(report)
        never = [a.id for a in chosen if a.report_sha256 is None]  # recorded by a release that stored no report: nothing was lost
        missing = [a.id for a in chosen if f"audits/{a.id:08d}/report.json" not in files and a.id not in never]
        if missing:  # a record whose stored report is gone: said, not left out in silence
            raise click.ClickException(f"the stored reports of audits {', '.join(map(str, missing))} are missing or unreadable: `auditor evidence chain` says more")
        # the chain from the first audit of the period to its last, every record in between (back-dated audits make the
        # period's records no run of ids), with every field its digest covers: `evidence chain --archive` checks them
        span = [r for r in chain if chosen and chosen[0].id <= r.id <= chosen[-1].id]
        files["chain.json"] = json.dumps([record_json(r) for r in span], indent=2).encode()
        # the period, so that the check knows which records' reports the archive must hold (a report taken out of it is
        # named), and the release that rendered the pages (a page is checked against its report by rendering it again)
        files["period.json"] = json.dumps(
            {"from": iso_time(low.astimezone(UTC)), "to": iso_time(high.astimezone(UTC)), "exported_by": __version__, "without_report": never}, indent=2
        ).encode()
    files["SHA256SUMS"] = "".join(f"{sha256(body)}  {name}\n" for name, body in sorted(files.items())).encode()
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, body in sorted(files.items()):
            archive.writestr(name, body)
    newest = f"; the newest chain record {span[-1].record_sha256}: give it apart from the archive, to compare with what `evidence chain --archive` prints" if span and span[-1].record_sha256 else ""
    err.print(f"wrote {len(chosen)} audits to {output}{newest}")


def _archived_chain(path: str) -> tuple[list[ChainedRecord], str, list[ChainProblem]]:
    """The chain records of an evidence export with the reports it holds, the digest the first names as previous, and
    what else does not hold in the archive: a report of the period taken out of it, a page or table that is not its
    report's, a file whose SHA256SUMS line does not match."""
    problems: list[ChainProblem] = []
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            files = {name: archive.read(name) for name in names}
        values = json.loads(files["chain.json"])
        period = json.loads(files["period.json"]) if "period.json" in files else None
        if period is not None:  # a period that says nothing would excuse every report: not an export's
            low, high = parse_time(period["from"]), parse_time(period["to"])
            if low is None or high is None:
                raise ValueError("period.json names no period")
        records = []
        for value in values:
            name = f"audits/{int(value['id']):08d}/report.json"
            records.append(record_from_json(value, files.get(name)))
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as e:
        raise click.UsageError(f"{path} is not an evidence export: {e}") from None
    # which records the archive must hold a report of: those of its period (an archive from before period.json: those
    # between the first and the last as-of time it holds a report of); a record made without a stored report aside
    if period is None:
        held = [r.as_of for r in records if r.report_body is not None]
        low, high = (min(held), max(held)) if held else (None, None)
    for index, record in enumerate(records):
        # a record names its report's digest unless it was made by a release that stored none (period.json's own list is
        # not trusted: it is not digested)
        due = low is not None and high is not None and low <= record.as_of <= high and record.report_sha256 is not None
        if record.report_body is None and due:
            records[index] = replace(record, report_state="missing")  # check_chain names it: "its stored report was removed"
    if period is not None and records and low is not None and high is not None:
        ends = [r for r in (records[0], records[-1]) if not low <= r.as_of <= high]  # an export's span starts and ends in its period
        if ends:
            problems.append(ChainProblem(ends[0].id, "period.json does not match the chain records: the span of an export starts and ends "
                                                                       "with audits of its period; period.json was changed"))
    exported_by = period.get("exported_by") if period is not None else None
    other = f" (exported by release {exported_by or 'unknown'}, checked by {__version__}: check it with the release that exported it)" if exported_by != __version__ else ""
    for record in records:
        if record.report_body is None:
            continue
        folder = f"audits/{record.id:08d}"
        try:
            report = json.loads(record.report_body)
        except ValueError:
            continue  # check_chain says so
        # every page and table is held to what its report renders: a page that differs is named, whatever period.json
        # says of the release that exported it (an edit could claim another release too)
        rendered = {"evidence.html": render_evidence(report, audit_id=record.id).encode(), "windows.csv": _windows_csv(report)}
        for kind, name in (("evidence page", "evidence.html"), ("windows table", "windows.csv")):
            shown = files.get(f"{folder}/{name}")
            if shown is None:
                problems.append(ChainProblem(record.id, f"its {kind} ({name}) is not in the archive"))
            elif shown != rendered[name]:
                _offset, line, column = first_difference(shown, rendered[name])
                problems.append(ChainProblem(record.id, f"its {kind} ({name}) is not its report's: changed at line {line}, column {column}{other}"))
    for entry in files.get("SHA256SUMS", b"").decode("utf-8", "replace").splitlines():
        digest, _, name = entry.partition("  ")
        if name and (name not in files or sha256(files[name]) != digest):
            audit = int(name.split("/")[1]) if name.startswith("audits/") and name.count("/") == 2 and name.split("/")[1].isdigit() else 0
            problems.append(ChainProblem(audit, f"{name} does not match its SHA256SUMS line" if name in files else f"{name} is named in SHA256SUMS but not in the archive"))
    return records, (records[0].prev_sha256 or GENESIS) if records else GENESIS, problems


def _windows_csv(report: dict[str, Any]) -> bytes:
    import csv

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["export", "dataset", "scheduled", "status", "files", "bytes", "records", "findings"])
    for e in report.get("exports", []):
        for w in e.get("windows", []):
            findings = "; ".join(f"[{f['severity']}] {f['code']}: {f['message']}" for f in w.get("findings", []))
            writer.writerow([e["name"], e["dataset_id"], w["scheduled"], w["status"], w["files"], w["bytes"], w["records"], findings])
    return out.getvalue().encode()


def _json(text: str) -> dict[str, Any] | None:
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _json_difference(a: Any, b: Any, path: str = "") -> str:
    """The first place two JSON values differ, as a path."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b or a[key] != b[key]:
                return _json_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    if isinstance(a, list) and isinstance(b, list):
        for index, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return _json_difference(x, y, f"{path}[{index}]")
        if len(a) != len(b):
            return f"{path} has {len(a)} entries here, {len(b)} recorded"
    return f"{path or 'the report'}: this file says {json.dumps(a)[:80]}, the catalog recorded {json.dumps(b)[:80]}"
