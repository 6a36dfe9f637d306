"""`auditor evidence …`: prove that a report is the one the catalog recorded, check the hash
chain of audit records, and export a period's evidence as one archive."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import click

from auditor.clikit import CONFIG_OPTION, err, guarded, runtime, when
from auditor.errors import CatalogError
from auditor.evidence import GENESIS, ChainedRecord, canonical, check_chain, first_difference, record_from_json, record_json, sha256
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
    if archive is not None:
        records, after = _archived_chain(archive)
        head = None
    else:
        after = GENESIS
        with runtime(config_path) as rt:
            records = rt.catalog.chain_records()
            head = rt.catalog.chain_head()
    problems = check_chain(records, head, after=after, head_kept=archive is None)
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
        missing = [a.id for a in chosen if f"audits/{a.id:08d}/report.json" not in files]
        if missing:  # a record whose stored report is gone: said, not left out in silence
            raise click.ClickException(f"the stored reports of audits {', '.join(map(str, missing))} are missing or unreadable: `auditor evidence chain` says more")
        # the chain from the first audit of the period to its last, every record in between (back-dated audits make the
        # period's records no run of ids), with every field its digest covers: `evidence chain --archive` checks them
        span = [r for r in chain if chosen and chosen[0].id <= r.id <= chosen[-1].id]
        files["chain.json"] = json.dumps([record_json(r) for r in span], indent=2).encode()
    files["SHA256SUMS"] = "".join(f"{sha256(body)}  {name}\n" for name, body in sorted(files.items())).encode()
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, body in sorted(files.items()):
            archive.writestr(name, body)
    err.print(f"wrote {len(chosen)} audits to {output}")


def _archived_chain(path: str) -> tuple[list[ChainedRecord], str]:
    """The chain records of an evidence export with the reports it holds, and the digest the first names as previous."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            values = json.loads(archive.read("chain.json"))
            records = []
            for value in values:
                name = f"audits/{int(value['id']):08d}/report.json"
                records.append(record_from_json(value, archive.read(name) if name in names else None))
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as e:
        raise click.UsageError(f"{path} is not an evidence export: {e}") from None
    return records, (records[0].prev_sha256 or GENESIS) if records else GENESIS


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
