"""The cycle collector around a command's start-up and exit.

Start-up loads a few hundred modules (SQLAlchemy, pydantic, click, the agent and what it
imports): hundreds of thousands of objects that live as long as the process. Each
collection on the way re-scans all of them, which costs a 1-run experiment about a tenth
of its time; so do the collections while the interpreter tears them down at exit. The
command therefore holds the collector off while it starts (``defer``), and once what it
runs is loaded (``settle``) freezes the heap so far (``gc.freeze``: those objects are
left out of every later collection) and collects as usual from there on. At exit the
heap is frozen again, so that tearing down the modules does not scan them once more;
objects are still freed as always, only cycles left at exit are not looked for.

Only the command does this: a program that imports agentledger as a library keeps its
own collector settings (``settle`` does nothing unless ``defer`` was called).
"""

from __future__ import annotations

import atexit
import gc

_deferred = False


def defer() -> None:
    """Hold cycle collection off until ``settle`` (the command's first step)."""
    global _deferred
    if _deferred or not gc.isenabled():
        return
    _deferred = True
    gc.disable()
    atexit.register(gc.freeze)  # registered first, so it runs after every other handler


def settle() -> None:
    """Freeze what start-up loaded and collect as usual from now on (before any run)."""
    global _deferred
    if not _deferred:
        return
    _deferred = False
    gc.freeze()
    gc.enable()
