"""Long jobs of the app: one stop flag per job, a time limit, and the server's error log.

Why not Gradio's own: `cancels=` drops the event but cannot stop a thread that is inside a
forward pass, and `time_limit` applies to streaming events only. The engine's long loops
(collection, PGD, evaluation, attacks) all poll a `should_stop()` callable between batches or
steps, so a job is that callable: its own flag (Stop in one tab ends that tab's job of that
kind, nothing else) or its deadline, whichever comes first.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from app import limits

log = logging.getLogger("mllmeraser.app")
LATE_CLICK = 10.0  # seconds after a job ends in which its Stop button is a late click on it, not a new stop


@dataclass(eq=False)
class Job:
    """One run of a long handler."""

    kind: str
    seconds: float = limits.JOB_SECONDS
    flag: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    def held_slot_lately(self, now: float) -> bool:
        """Running, or ended less than LATE_CLICK seconds ago (the next queued job starts then)."""
        return self.ended is None or now - self.ended < LATE_CLICK

    @property
    def timed_out(self) -> bool:
        return time.monotonic() - self.started > self.seconds

    def should_stop(self) -> bool:
        return self.flag.is_set() or self.timed_out

    def stopped_message(self, what: str = "") -> str:
        why = (f"it reached the time limit of {self.seconds:g} s per job" if self.timed_out and not self.flag.is_set()
               else "you pressed Stop")
        return f"Stopped ({why}).{(' ' + what) if what else ''}"


class Jobs:
    """The running jobs of every session, by (session id, kind)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: dict[tuple[str, str], set[Job]] = {}
        # Stop pressed while that job waited in the queue: when, and the jobs that held the slot then (and those
        # that took it after them while it stayed busy)
        self._pending: dict[tuple[str, str], tuple[float, set[Job]]] = {}
        self._finished: dict[tuple[str, str], float] = {}  # when each session's last job of a kind ended

    def start(self, session_id: str, kind: str, seconds: float = limits.JOB_SECONDS) -> Job:
        job = Job(kind, seconds)
        now = time.monotonic()
        with self._lock:
            self._running.setdefault((session_id, kind), set()).add(job)
            asked = self._pending.pop((session_id, kind), None)
            for key, (_, holders) in list(self._pending.items()):  # the queue moves on: a job still waiting is
                if any(h.held_slot_lately(now) for h in holders):    # behind this one
                    holders.add(job)
                else:  # the slot was free in between: nothing of that kind was queued, the stop can never apply
                    del self._pending[key]
        # the stop was for a job queued behind the slot's holders: this one if they held it until just now. A
        # click made with nothing of this kind queued found them long gone (it stopped the next run, up to
        # JOB_SECONDS later)
        if asked is not None and now - asked[0] < seconds and any(h.held_slot_lately(now) for h in asked[1]):
            job.flag.set()  # it ends at its first check, with "you pressed Stop"
        return job

    def finish(self, session_id: str, job: Job) -> None:
        with self._lock:
            job.ended = self._finished[(session_id, job.kind)] = time.monotonic()
            jobs = self._running.get((session_id, job.kind), set())
            jobs.discard(job)
            if not jobs:
                self._running.pop((session_id, job.kind), None)

    def stop(self, session_id: str, *kinds: str) -> int:
        """Set the flag of this session's running jobs of these kinds; returns how many. With none
        running while another job holds the long-job slot, this session's job of that kind is
        waiting in the queue (it registers only when it starts): the stop is kept for it. Why: Stop
        was lost, and the queued job then ran to its time limit. Pressed with the slot free, or
        within `LATE_CLICK` seconds of this session's job of that kind ending (a click that raced the
        job's end), it is dropped, so a later run is not stopped by an old click."""
        with self._lock:
            jobs = [j for k in kinds for j in self._running.get((session_id, k), ())]
            if not jobs and self._running:
                now = time.monotonic()
                holders = {j for js in self._running.values() for j in js}
                self._pending.update({(session_id, k): (now, set(holders)) for k in kinds
                                      if now - self._finished.get((session_id, k), -LATE_CLICK) >= LATE_CLICK})
        for j in jobs:
            j.flag.set()
        return len(jobs)

    def running(self, session_id: str, kind: str) -> int:
        with self._lock:
            return len(self._running.get((session_id, kind), ()))


def logged(fn):
    """Wrap a Gradio handler so that an unexpected exception is logged on the server with its
    traceback and reaches the visitor as a sentence with a reference (never a bare "Error")."""
    import gradio as gr

    def report(exc: Exception) -> gr.Error:
        ref = uuid.uuid4().hex[:8]
        log.exception("handler %s failed (reference %s)", fn.__name__, ref, exc_info=exc)
        return gr.Error(f"Something went wrong on the server ({type(exc).__name__}, reference {ref}); it was "
                        "logged. Try again, or with other settings.")

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise report(exc) from None
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise report(exc) from None
    return call
