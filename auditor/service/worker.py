"""The service's loop: audit what is due, deliver what is due; a loop that cannot die quietly.

Each step is guarded: an error is logged, counted (`/metrics`), kept as the last error, and the
step is retried with exponential backoff. `/healthz` answers 503 with the reason when the loop
has not completed for too long or a step keeps failing. Due-ness comes from the catalog (each
export's latest live audit), so replicas on one catalog share the schedule; each destination is
audited by one process at a time (the catalog's destination lock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from auditor.audit import CLOCK_AHEAD, CLOCK_TOLERANCE, LOCK_LOST, AuditOptions
from auditor.errors import CatalogError
from auditor.report import AuditReport
from auditor.runtime import Runtime

log = logging.getLogger("auditor.worker")
MAX_BACKOFF = timedelta(minutes=5)
FAILING_AFTER = 3  # consecutive failures of one step that make the service unhealthy


@dataclass
class StepState:
    failures: int = 0
    next_try: datetime | None = None
    last_error: str | None = None


class Worker:
    """Audits each destination on its own interval, raises alerts, delivers notices."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        pause: float = 1.0,
    ) -> None:
        self.runtime, self.settings, self.clock, self.wall_clock, self.pause = runtime, runtime.settings, clock, wall_clock, pause
        self.last_audit: dict[str, datetime] = {}  # destination -> as-of of this process's last audit of it
        self.latest: AuditReport | None = None
        self.last_duration = 0.0
        self.errors: Counter[str] = Counter()  # step -> errors since start
        self.steps = {"audit": StepState(), "deliver": StepState()}
        self.last_loop: datetime | None = None
        self.clock_problem: str | None = None  # this host's clock runs ahead of the catalog's: its audits are history
        self.locks_lost: Counter[str] = Counter()  # destination -> audits in a row whose lock ran out (they are history)
        self.unrecorded: Counter[str] = Counter()  # destination -> audits in a row the catalog did not record
        self.recorded_this_turn = False  # an audit of the last audit step was recorded (the catalog answers)
        self.started = wall_clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- steps ------------------------------------------------------------------------

    def due(self, now: datetime) -> list[str]:
        """Destinations whose interval has passed since the latest live audit of their exports (any process's)."""
        try:
            live = self.runtime.catalog.live_as_of()
        except CatalogError:
            live = {}
        due = []
        for destination in self.settings.destinations:
            exports = [e.name for e in self.settings.exports if e.destination == destination.name]
            if not exports:
                continue
            times = [t for t in (live.get(e) for e in exports) if t is not None]
            last = min(times) if len(times) == len(exports) else None
            mine = self.last_audit.get(destination.name)
            if mine is not None and (last is None or mine > last):
                last = mine
            if last is None or now - last >= destination.audit_every or last > now + CLOCK_TOLERANCE:  # ahead: a clock that ran ahead
                due.append(destination.name)
            elif times and len(times) == len(exports) and (mine is None or min(times) > mine):
                # not due: another process recorded its audit since this one's failed; this one's failures are behind it
                self.unrecorded.pop(destination.name, None)
                self.locks_lost.pop(destination.name, None)
        return due

    def audit_due(self, now: datetime, *, force: bool = False) -> bool:
        """Audit each due destination (all with `force`) that no other process is auditing right now."""
        did = False
        self.recorded_this_turn = False
        destinations = [d.name for d in self.settings.destinations] if force else self.due(now)
        every = {d.name: d.audit_every for d in self.settings.destinations}
        again: list[str] = []  # audits the catalog lost on their way to it twice in a row: the step fails (and backs off)
        for name in destinations:
            exports = frozenset(e.name for e in self.settings.exports if e.destination == name)
            if not exports:
                continue
            with self._lock:
                started = time.monotonic()
                since = None if force else now - every[name]  # due was read before the lock: check again under it
                options = AuditOptions(only_exports=exports, sample_percent=self.settings.validation.serve_sample, present=True)
                report = self.runtime.audit(now=now, options=options, wait=force, unless_live_since=since, recorded=True)
                if report is None:
                    log.info("destination %s is being (or was just) audited by another process", name)
                    continue
                self.last_duration = time.monotonic() - started
                self.latest = report
                did = True
                lost = [e.message for e in report.errors if e.code == LOCK_LOST]
                if lost:  # history: nothing recorded the present, so the destination stays due (unless another process audits it)
                    self.locks_lost[name] += 1
                    self.errors["audit"] += 1
                    log.warning("destination %s: %s", name, lost[0])
                elif report.audit_id is None:  # the catalog lost it on its way (went away, ended the recording): nothing recorded
                    why = next((e.message for e in report.errors if e.destination == "catalog"), "not recorded")
                    self.unrecorded[name] += 1
                    self.errors["audit"] += 1
                    log.warning("destination %s: its audit could not be recorded (%s): it stays due", name, why)
                    if self.unrecorded[name] > 1:
                        again.append(f"{name} ({why})")
                else:
                    self.unrecorded.pop(name, None)
                    self.recorded_this_turn = True
                    self.locks_lost.pop(name, None)
                    self.last_audit[name] = now
                ahead = [e.message for e in report.errors if e.code == CLOCK_AHEAD]
                if ahead:  # recorded as history, and every audit this process makes will be until its clock is right
                    self.clock_problem = ahead[0]
                    self.errors["audit"] += 1
                    log.error("destination %s: %s", name, ahead[0])
                elif report.audit_id is not None:  # recorded, and held to the catalog's clock without a fault
                    self.clock_problem = None
        if again:
            raise CatalogError(f"the audit of {'; '.join(again)} could not be recorded, twice in a row: it stays due")
        return did

    def audit_now(self, now: datetime) -> AuditReport | None:
        """Audit every export now (waiting for other processes' audits of the same destinations)."""
        with self._lock:
            report = self.runtime.audit(now=now, options=AuditOptions(present=True), wait=True)
            if report is not None:
                self.latest = report
                for destination in self.settings.destinations:
                    self.last_audit[destination.name] = now
            return report

    def deliver(self, now: datetime) -> bool:
        return self.runtime.deliver(now) > 0

    def run_once(self) -> bool:
        """One turn of the loop; never raises."""
        now = self.clock()
        did = False
        for name, step in (("audit", self.audit_due), ("deliver", self.deliver)):
            state = self.steps[name]
            if state.next_try is not None and now < state.next_try:
                continue
            try:
                did = step(now) or did
            except Exception as e:
                self.errors[name] += 1
                state.failures += 1
                state.last_error = f"{type(e).__name__}: {e}"[:500]
                state.next_try = now + min(MAX_BACKOFF, timedelta(seconds=2 ** min(state.failures, 10)))
                log.exception("worker step %s failed (%d in a row); retrying after %s", name, state.failures, state.next_try)
            else:
                state.failures, state.next_try, state.last_error = 0, None, None
                if name == "audit" and self.recorded_this_turn:  # the catalog answers again: a step that failed on it tries now
                    for other in self.steps.values():
                        if other.failures and (other.last_error or "").startswith("CatalogError"):
                            other.next_try = None
        self.last_loop = self.wall_clock()
        return did

    # -- health ----------------------------------------------------------------------------

    def stale_after(self) -> timedelta:
        """How long the loop may go without completing a turn: a few audit intervals, at least a minute."""
        shortest = min((d.audit_every for d in self.settings.destinations), default=timedelta(minutes=15))
        return max(timedelta(minutes=1), 3 * shortest, timedelta(seconds=10 * self.pause))

    def health(self) -> tuple[bool, str]:
        now = self.wall_clock()
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            return False, "the worker thread has stopped"
        last = self.last_loop or self.started
        if now - last > self.stale_after():
            return False, f"the worker loop has not completed since {last:%Y-%m-%dT%H:%M:%SZ} (limit {self.stale_after()})"
        failing = [f"{name}: {s.failures} failures in a row, last: {s.last_error}" for name, s in self.steps.items() if s.failures >= FAILING_AFTER]
        if self.clock_problem is not None:
            failing.append(self.clock_problem)
        failing += [f"destination {name}: its audit lock ran out in {n} audits in a row: they are history" for name, n in self.locks_lost.items() if n >= FAILING_AFTER]
        failing += [f"destination {name}: {n} audits in a row could not be recorded" for name, n in self.unrecorded.items() if n >= FAILING_AFTER]
        if failing:
            return False, "; ".join(failing)
        return True, "ok"

    # -- thread -------------------------------------------------------------------------------

    def run_forever(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.pause)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, daemon=True, name="auditor-worker")
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
