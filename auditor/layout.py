"""Folder-name templates (AEP's macros, reference §5.2) and matching keys against them.

Pure: a template compiles to a regular expression; `match` turns a key relative to the
destination root into the dataset, the export time and the file name it names. A key with an
empty, `.` or `..` segment names no export (`unsafe_key` says why): object stores take such keys
verbatim, so one could otherwise stand in for another folder, or lead a restore out of its target.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from auditor.errors import LayoutError

DEFAULT_TEMPLATE = "%DATASET_ID%/exportTime=%EXPORT_TIME%"

_MACRO = re.compile(r"%([A-Z_]+)(?:\(([^)%]*)\))?%")
_FREE_MACROS = {
    "DESTINATION",
    "DESTINATION_NAME",
    "DATASET_NAME",
    "DESTINATION_INSTANCE_ID",
    "DESTINATION_INSTANCE_NAME",
    "SANDBOX_NAME",
    "ORGANIZATION_NAME",
}
# Java-style DATETIME tokens (as AEP writes them) -> (regex, strptime directive)
_DATETIME_TOKENS = [
    ("YYYY", r"[0-9]{4}", "%Y"),
    ("yyyy", r"[0-9]{4}", "%Y"),
    ("MM", r"[0-9]{2}", "%m"),
    ("dd", r"[0-9]{2}", "%d"),
    ("DD", r"[0-9]{2}", "%d"),
    ("HH", r"[0-9]{2}", "%H"),
    ("mm", r"[0-9]{2}", "%M"),
    ("ss", r"[0-9]{2}", "%S"),
]


@dataclass(frozen=True)
class Layout:
    """A compiled folder template.

    >>> layout = parse_layout("%DATASET_ID%/exportTime=%EXPORT_TIME%")
    >>> layout.match("ds1/exportTime=202611250300/part-0.parquet").export_time
    datetime.datetime(2026, 11, 25, 3, 0, tzinfo=datetime.timezone.utc)
    """

    template: str
    pattern: re.Pattern[str]
    time_regex: re.Pattern[str]
    time_format: str
    has_dataset: bool
    # parsed folders (dataset, time, export time) by folder key: a folder's name is parsed once, not once per file
    _folders: dict[str, LayoutMatch | None] = field(default_factory=dict, init=False, repr=False, compare=False)
    _segments: int = field(default=0, init=False, repr=False, compare=False)  # path segments of a folder (macro arguments aside)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_segments", _MACRO.sub("", self.template).count("/") + 1)

    def match(self, key: str) -> LayoutMatch | None:
        """The parts of `key` (relative to the destination root), or None if it does not fit or is unsafe."""
        if unsafe_key(key) is not None:
            return None
        # every part of a template stays within one path segment, so a key's folder is its first
        # `_segments` segments and the rest is its file: the folder alone decides, and is parsed once
        parts = key.split("/", self._segments)
        if len(parts) > self._segments:
            file = parts.pop()
            folder = "/".join(parts)
            try:
                parsed = self._folders[folder]
            except KeyError:
                parsed = self._match_key(f"{folder}/-")
                if len(self._folders) >= _FOLDER_CACHE:
                    self._folders.clear()
                self._folders[folder] = parsed
            if parsed is not None and parsed.folder == folder:
                return LayoutMatch(parsed.dataset_id, parsed.time_text, parsed.export_time, folder, file, parsed.dataset_folder)
        return self._match_key(key)

    def _match_key(self, key: str) -> LayoutMatch | None:
        m = self.pattern.match(key)
        if m is None:
            return None
        folder = key[: m.end("folder")]
        dataset = m.group("dataset") if self.has_dataset else None
        dataset_end = key.find("/", m.end("dataset")) if self.has_dataset else -1
        dataset_folder = key[:dataset_end] if dataset_end >= 0 else folder
        time_text = m.group("time")
        export_time: datetime | None = None
        if self.time_regex.fullmatch(time_text):
            try:
                if self.time_format == "%Y%m%d%H%M":  # AEP's own: read the digits (strptime is slow, and this runs once per folder)
                    t = time_text
                    export_time = datetime(int(t[0:4]), int(t[4:6]), int(t[6:8]), int(t[8:10]), int(t[10:12]), tzinfo=UTC)
                else:
                    export_time = datetime.strptime(time_text, self.time_format).replace(tzinfo=UTC)
            except ValueError:
                export_time = None
        return LayoutMatch(dataset, time_text, export_time, folder, m.group("file"), dataset_folder)

    def folder_for(self, dataset_id: str, when: datetime) -> str:
        """The folder (relative to the root) AEP writes for one dataset and scheduled time."""

        def expand(m: re.Match[str]) -> str:
            name, arg = m.group(1), m.group(2)
            if name == "DATASET_ID":
                return dataset_id
            if name == "EXPORT_TIME":
                return when.strftime("%Y%m%d%H%M")
            if name == "DATETIME":
                return when.strftime(_datetime_format(arg or "")[1])
            return f"%{name}%"

        return _MACRO.sub(expand, self.template)

    def listing_prefix(self, dataset_id: str, slot: datetime, *, whole_day: bool = False) -> str:
        """A key prefix (relative to the root) that every folder of `dataset_id` for `slot` starts with;
        with `whole_day`, every folder of that slot's day (UTC). Not always a folder: `ds/exportTime=20261130`.

        The template is expanded up to its time, then the time adds as much as is fixed over the minute
        (or the day). A macro the auditor cannot expand (`%DATASET_NAME%` …) ends the prefix before it.

        >>> parse_layout(None).listing_prefix("ds1", datetime(2026, 11, 30, 3, tzinfo=UTC), whole_day=True)
        'ds1/exportTime=20261130'
        """
        out, pos = [], 0
        for m in _MACRO.finditer(self.template):
            out.append(self.template[pos : m.start()])
            name, arg = m.group(1), m.group(2)
            if name == "DATASET_ID":
                out.append(dataset_id)
                pos = m.end()
                continue
            if name in ("EXPORT_TIME", "DATETIME"):
                fmt = "%Y%m%d%H%M" if name == "EXPORT_TIME" else _datetime_format(arg or "")[1]
                first = slot.replace(hour=0, minute=0, second=0, microsecond=0) if whole_day else slot.replace(second=0, microsecond=0)
                last = first + (timedelta(days=1) if whole_day else timedelta(minutes=1)) - timedelta(seconds=1)
                out.append(os.path.commonprefix([first.strftime(fmt), last.strftime(fmt)]))
            return "".join(out)
        return "".join(out) + self.template[pos:]


class LayoutMatch(NamedTuple):  # one per listed object: a named tuple is made in a third of a frozen dataclass's time
    dataset_id: str | None
    time_text: str
    export_time: datetime | None  # None when the time part is malformed
    folder: str  # relative folder of the export, e.g. "ds1/exportTime=202611250300"
    file: str  # the rest of the key below the folder (may contain "/" for sub-folders)
    dataset_folder: str  # relative folder that holds every export of the dataset


_UNSAFE_SEGMENTS = {"": "an empty", ".": "a '.'", "..": "a '..'"}
_FOLDER_CACHE = 100_000  # parsed folder names kept per layout (cleared when full)


def unsafe_key(key: str) -> str | None:
    """Why `key` (relative to the destination root) can name no export file, or None when it can.

    >>> unsafe_key("aep/../ds/exportTime=202611270300/part-0.parquet")
    "unsafe object key: it has a '..' path segment"
    """
    for segment in key.split("/"):
        if segment in _UNSAFE_SEGMENTS:
            return f"unsafe object key: it has {_UNSAFE_SEGMENTS[segment]} path segment"
    return None


def _datetime_format(spec: str) -> tuple[str, str]:
    regex, fmt, rest = "", "", spec
    while rest:
        for token, token_regex, directive in _DATETIME_TOKENS:
            if rest.startswith(token):
                regex, fmt, rest = regex + token_regex, fmt + directive, rest[len(token) :]
                break
        else:
            if rest[0].isalpha():
                raise LayoutError(f"folder template: DATETIME format {spec!r} has an unsupported token at {rest!r}")
            regex, fmt, rest = regex + re.escape(rest[0]), fmt + rest[0].replace("%", "%%"), rest[1:]
    if "%Y" not in fmt or "%m" not in fmt or "%d" not in fmt:
        raise LayoutError(f"folder template: DATETIME format {spec!r} needs at least year, month and day")
    return regex, fmt


def parse_layout(template: str | None, *, datasets: int = 1) -> Layout:
    """Compile a folder template; raises LayoutError for templates that cannot identify windows."""
    text = (template or DEFAULT_TEMPLATE).strip().strip("/")
    if not text:
        raise LayoutError("folder template: empty")
    if any(segment in _UNSAFE_SEGMENTS for segment in text.split("/")):
        raise LayoutError(f"folder template {text!r}: an empty, '.' or '..' folder name can match no export")
    parts: list[str] = []
    time_regex, time_format = "", ""
    has_dataset = False
    pos = 0
    for m in _MACRO.finditer(text):
        parts.append(re.escape(text[pos : m.start()]))
        name, arg = m.group(1), m.group(2)
        if name == "DATASET_ID":
            if has_dataset:
                raise LayoutError(f"folder template {text!r}: %DATASET_ID% appears twice")
            has_dataset = True
            parts.append(r"(?P<dataset>[^/]+?)")
        elif name in ("EXPORT_TIME", "DATETIME"):
            if time_format:
                raise LayoutError(f"folder template {text!r}: use one of %EXPORT_TIME% or %DATETIME(…)%, once")
            if name == "EXPORT_TIME":
                time_regex, time_format = r"[0-9]{12}", "%Y%m%d%H%M"  # ASCII digits only: \d and int() take any script's digits
            else:
                time_regex, time_format = _datetime_format(arg or "")
            parts.append(r"(?P<time>[^/]*?)")
        elif name in _FREE_MACROS:
            parts.append(r"[^/]+?")
        else:
            raise LayoutError(f"folder template {text!r}: unknown macro %{name}%")
        pos = m.end()
    parts.append(re.escape(text[pos:]))
    if not time_format:
        raise LayoutError(f"folder template {text!r}: needs %EXPORT_TIME% or %DATETIME(…)% to tell exports apart")
    if not has_dataset and datasets > 1:
        raise LayoutError(f"folder template {text!r}: needs %DATASET_ID% when an export has several datasets")
    pattern = re.compile("^(?P<folder>" + "".join(parts) + ")/(?P<file>.+)$")
    return Layout(text, pattern, re.compile(time_regex), time_format, has_dataset)
