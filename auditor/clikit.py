"""What every command shares: loading settings, the composition root, times, progress bars, errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from auditor.audit import Progress as ProgressCallback
from auditor.config import load_from_environment
from auditor.errors import AuditorError, ScheduleError
from auditor.runtime import Runtime
from auditor.schedule import parse_time

CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML file (else $AUDITOR_CONFIG, else config/auditor.toml)")
_FORCING = ("FORCE_TERMINAL", "TTY_COMPATIBLE", "FORCE_COLOR")  # what makes rich treat a stream that is no terminal as one


def _a_terminal(stream: Any) -> bool:
    """Whether `stream` is a terminal; standard error closed when the process started (None) or since is not one."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except (ValueError, OSError):
        return False


class _Stderr:
    """rich's Console on standard error, made when first used: a scheduled audit writing its report to a pipe or a
    file prints nothing else, and rich was 30 ms of such a process's start."""

    def __init__(self) -> None:
        self._console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    @property
    def is_terminal(self) -> bool:
        if self._console is None and not _a_terminal(sys.stderr) and not any(name in os.environ for name in _FORCING):
            return False  # what rich would answer
        return bool(self.console.is_terminal)

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)


err = _Stderr()
F = TypeVar("F", bound=Callable[..., Any])


def guarded(command: F) -> F:
    """Render AuditorError as a message and exit code 2 (usage or configuration error)."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AuditorError as e:
            err.print(f"error: {e}", markup=False, highlight=False)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@contextmanager
def runtime(config_path: str | None) -> Iterator[Runtime]:
    """The process's composition root for one command; closed (engine disposed, workers stopped) on exit."""
    with Runtime(load_from_environment(config_path)) as built:
        yield built


def when(value: str | None, name: str) -> datetime:
    if value is None or value == "now":
        return datetime.now(UTC)
    try:
        return parse_time(value, key=name)
    except ScheduleError as e:
        raise click.BadParameter(str(e).split(": ", 1)[-1], param_hint=name) from None


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[ProgressCallback | None]:
    """A progress bar on a terminal: files checked and files per second; for deep checks also the
    bytes verified and bytes per second (the audit reports them as phase "bytes")."""
    if not enabled or not err.is_terminal:
        yield None
        return
    from rich import filesize
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[amount]}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn())
    console = err.console if isinstance(err, _Stderr) else err  # (tests put a Console of their own in its place)
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                label = "bytes verified" if phase == "bytes" else f"checking files ({phase})"
                tasks[phase] = bar.add_task(label, total=total, amount="", rate="")
            task = tasks[phase]
            bar.update(task, completed=done, total=total)
            speed = bar.tasks[task].speed  # over rich's recent window
            if phase == "bytes":
                amount, rate = f"{filesize.decimal(done)}/{filesize.decimal(total)}", f"{filesize.decimal(int(speed or 0))}/s"
            else:
                amount, rate = f"{done}/{total}", f"{speed or 0:,.0f} files/s"
            bar.update(task, amount=amount, rate=rate)

        yield update


def emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        click.echo(text, nl=False)
