"""What every command shares: loading settings, the composition root, times, progress bars, errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from auditor.audit import Progress as ProgressCallback
from auditor.config import load_from_environment
from auditor.errors import AuditorError, ScheduleError
from auditor.runtime import Runtime
from auditor.schedule import parse_time

CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML file (else $AUDITOR_CONFIG, else config/auditor.toml)")
err = Console(stderr=True)
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
    if not enabled or not err.is_terminal:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"checking files ({phase})", total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        click.echo(text, nl=False)
