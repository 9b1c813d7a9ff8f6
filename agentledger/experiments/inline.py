"""Sync runs called on the event loop's own thread, their timeout kept by an alarm.

Handing each run of a sync target to a pool thread and back costs more than a no-op run
itself (two thread switches and several event-loop turns). With one run at a time
(``parallel 1``) nothing else needs the loop while a run goes, so the target is called
right there, on the main thread. Its timeout is kept by ``SIGALRM`` (``setitimer``): at
the deadline ``Deadline`` is raised inside the run, as pytest-timeout does; it interrupts
``time.sleep``, socket reads and lock waits too, and it is a ``BaseException`` so that an
agent's ``except Exception`` does not swallow it. A run that swallows it anyway gets it
again every ``CANCEL_GRACE_SECONDS``; one that still has not returned after
``MAX_ALARMS`` of them cannot be stopped by anything short of ending the process: the
command then exits (status 3) with a message, the experiment left to ``--resume`` (what
it recorded is kept, as after any kill). Runs that can block in C code ignoring signals
for longer than their timeout belong on ``--parallel 2`` or more, where a timed-out run is
left on its thread.

Used only where an alarm can be set: the main thread of a POSIX process.
"""

from __future__ import annotations

import _signal
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

CANCEL_GRACE_SECONDS = 1.0
MAX_ALARMS = 5
EXIT_STUCK = 3


class Deadline(BaseException):
    """Raised inside a run that passed its timeout."""


class Interrupted(BaseException):
    """Raised inside a run when the experiment is interrupted (Ctrl-C) while it goes."""


class _Interruption:
    """The main thread's SIGINT handler while the event loop handles Ctrl-C: between runs it
    does what the loop's own handler does (nothing: the loop hears the signal through its
    wakeup fd); during a run it also tells the experiment at once (the loop only hears of
    the signal after the run has ended) and ends the run with ``Interrupted``."""

    def __init__(self) -> None:
        self.notify: Callable[[], None] | None = None
        self.replaced: Any = None
        self.decided = False
        """Whether this experiment's SIGINT handler was looked at (once per experiment)."""
        self.on_second: Callable[[], None] | None = None
        """What a second Ctrl-C does (quit at once), called from here: the loop may be held
        by a run that never yields, and would never hear it."""
        self.count = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count >= 2 and self.on_second is not None:
            self.on_second()
        notify = self.notify
        if notify is None:
            if callable(self.replaced):
                self.replaced(signum, frame)
            return
        self.notify = None
        notify()
        raise Interrupted


_INTERRUPTION = _Interruption()


def _is_ours(handler: object) -> bool:
    return handler is _INTERRUPTION


class _Alarm:
    """The one pending deadline of the main thread."""

    def __init__(self) -> None:
        self.armed = False
        self.fired = 0
        self.trace_id = ""

    def fire(self, signum: int, frame: FrameType | None) -> None:
        if not self.armed:
            return
        self.fired += 1
        if self.fired > MAX_ALARMS:
            sys.stderr.write(
                f"Error: run {self.trace_id} ignored its timeout {MAX_ALARMS} times and cannot "
                "be stopped; exiting. What was recorded is kept: `agentledger run experiment "
                "--resume` continues, and --parallel 2 leaves such runs on their own thread\n"
            )
            sys.stderr.flush()
            os._exit(EXIT_STUCK)
        signal.setitimer(signal.ITIMER_REAL, CANCEL_GRACE_SECONDS)
        raise Deadline


_ALARM = _Alarm()
_ALARM_HANDLER = _ALARM.fire
"""The bound method, made once (each ``_ALARM.fire`` is a new object, never ``is`` it)."""


def stand_in_for_sigint(on_second: Callable[[], None] | None) -> None:
    """Put this module's SIGINT handler in place of the event loop's (main thread, once per
    experiment): it lets the loop hear Ctrl-C as before, reaches a run that holds the loop,
    and makes a second Ctrl-C quit at once however the loop is held."""
    if _INTERRUPTION.decided or threading.current_thread() is not threading.main_thread():
        return
    _INTERRUPTION.decided = True
    _INTERRUPTION.on_second, _INTERRUPTION.count = on_second, 0
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and not _is_ours(handler) and handler is not signal.default_int_handler:
        _INTERRUPTION.replaced = handler
        signal.signal(signal.SIGINT, _INTERRUPTION)


def restore_sigint() -> None:
    """Put back the handler ``stand_in_for_sigint`` replaced."""
    replaced, _INTERRUPTION.replaced = _INTERRUPTION.replaced, None
    _INTERRUPTION.decided, _INTERRUPTION.on_second, _INTERRUPTION.notify = False, None, None
    if replaced is not None and _is_ours(signal.getsignal(signal.SIGINT)):
        signal.signal(signal.SIGINT, replaced)


def handles_sigint() -> bool:
    """Whether the command's own Ctrl-C handling is in place (a ``KeyboardInterrupt`` in a
    run is then the agent's own, not the user's)."""
    return _INTERRUPTION.replaced is not None


def available() -> bool:
    """Whether sync runs can be called here with their timeout kept (main thread, POSIX)."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def alarm_handler() -> Iterator[None]:
    """Install the alarm's handler for the duration of an experiment (main thread only)."""
    previous: Any = signal.signal(signal.SIGALRM, _ALARM_HANDLER)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def deadline(
    seconds: float | None, trace_id: str, on_interrupt: Callable[[], None]
) -> Iterator[_Alarm]:
    """Raise ``Deadline`` in the block after ``seconds`` (no limit: None); the alarm it
    yields says afterwards whether it fired (a run that swallowed it still timed out).
    Where ``stand_in_for_sigint`` is in place (the command's), a Ctrl-C reaches the run
    now, not when it returns: ``on_interrupt`` is called and ``Interrupted`` raised in it."""
    _ALARM.trace_id, _ALARM.fired = trace_id, 0
    if _INTERRUPTION.replaced is not None:
        _INTERRUPTION.notify = on_interrupt
    if seconds is not None:
        if _signal.getsignal(signal.SIGALRM) is not _ALARM_HANDLER:
            # An earlier run put its own handler in (the raw lookup costs nothing).
            signal.signal(signal.SIGALRM, _ALARM_HANDLER)
        _ALARM.armed = True
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield _ALARM
    finally:
        if seconds is not None:
            _ALARM.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
        _INTERRUPTION.notify = None
