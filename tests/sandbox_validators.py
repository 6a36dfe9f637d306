"""Validators that misbehave on purpose, for the sandbox tests (imported inside worker processes)."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import Any

from auditor.validate import FileVerdict, Level, validate_data_file


def segfault(source: Any, name: str, *, deep: bool) -> FileVerdict:
    if b"crash" in source.read_range(0, source.size):
        ctypes.string_at(0)  # a real segmentation fault, as a broken native reader would cause
    return validate_data_file(source, name, deep=deep)


def hang(source: Any, name: str, *, deep: bool) -> FileVerdict:
    if b"hang" in source.read_range(0, source.size):
        while True:  # a reader in an endless loop on hostile bytes: it burns CPU until the deadline
            pass
    return FileVerdict(Level.FOOTER)


def sleep(source: Any, name: str, *, deep: bool) -> FileVerdict:
    if b"sleep" in source.read_range(0, source.size):
        time.sleep(3600)  # blocked without running (as a worker that is frozen, or starved by its host)
    return FileVerdict(Level.FOOTER)


def allocate(source: Any, name: str, *, deep: bool) -> FileVerdict:
    hoard = [bytearray(64 << 20) for _ in range(1000)]  # 64 GiB: more than any limit
    return FileVerdict(Level.FOOTER, records=len(hoard))


def kill_self(source: Any, name: str, *, deep: bool) -> FileVerdict:
    os.kill(os.getpid(), signal.SIGKILL)
    return FileVerdict(Level.FOOTER)


def worker_pid(source: Any, name: str, *, deep: bool) -> FileVerdict:
    return FileVerdict(Level.FOOTER, records=os.getpid())


def abort(source: Any, name: str, *, deep: bool) -> FileVerdict:
    data = source.read_range(0, source.size)
    if b"warn" in data:  # a check that writes to stderr and goes on
        os.write(2, b"UserWarning: what(): words of another file, SIGKILL\n")
        return FileVerdict(Level.FOOTER)
    if b"segv" in data:  # a crash that says nothing
        ctypes.string_at(0)
    if b"exit" in data:  # the interpreter fails: a traceback (quoting a signed URL), then an exit code
        os.write(2, b"Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: the worker broke reading https://acct.blob.core.windows.net/c/f?sv=1&sig=hunter2\n")
        os._exit(3)
    if b"abort" in data:
        # what a C++ reader does on an exception nothing catches: a message on stderr, then abort(); the message may
        # carry text from the file (a column's name, say), here one that names a signal
        os.write(2, b"terminate called after throwing an instance of 'parquet::ParquetException'\n  what():  the reader's last words on column 'SIGKILL'\n")
        os.abort()
    return validate_data_file(source, name, deep=deep)
