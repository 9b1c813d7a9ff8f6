"""Writing a generation's inputs file again from the log: offline, byte for byte.

A completed generation's stream holds everything its file shows (see
``agentledger.generation.inputsfile``), so ``rewrite`` folds it and writes the same bytes
without calling any model. This module stays light (no model client), so a rewrite
starts fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agentledger.events.generation import generation_stream
from agentledger.eventstore.store import EventStore
from agentledger.generation.errors import (
    GenerationError,
    OutputExistsError,
    UnknownGenerationError,
)
from agentledger.generation.inputsfile import (
    GenerationView,
    fold_generation,
    recorded_generation,
    render,
)


@dataclass(frozen=True)
class GenerationResult:
    """How a generation went: its id, what its events say, and whether the file was written."""

    generation_id: str
    view: GenerationView
    output: Path
    written: bool


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing inputs file unless asked to, or to write where no
    file can be written (checked before any work)."""
    if path.is_dir():
        raise OutputExistsError(f"{path} is a directory; -o must name a file")
    if path.exists() and not path.is_file():
        # A device, FIFO or socket: replacing it with a file is never what was meant.
        raise OutputExistsError(f"{path} is not a regular file; -o must name a file")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it, or -o FILE")
    folder = next((p for p in path.parents if p.exists()), None)
    if folder is not None and not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise GenerationError(f"cannot write {path}: {folder} is not writable; choose -o FILE")


def write_file(path: Path, text: str, *, overwrite: bool = True) -> None:
    """Write ``text`` to ``path`` through a temporary sibling renamed into place; a failure
    is a ``GenerationError`` naming the file. Without ``overwrite`` an existing file is
    never replaced (``OutputExistsError``)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(text.encode("utf-8"))
        if not overwrite:
            # Another generation may have written the file since check_output: link
            # refuses to replace it, so the later writer loses instead of overwriting.
            try:
                os.link(tmp, path)
            except FileExistsError:
                tmp.unlink(missing_ok=True)
                raise OutputExistsError(
                    f"{path} was written by another process meanwhile; pass --overwrite "
                    "to replace it, or -o FILE"
                ) from None
            tmp.unlink()
            return
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise GenerationError(
            f"cannot write {path}: {exc.strerror or exc}; choose another -o FILE"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def generation_view(store: EventStore, generation_id: str) -> GenerationView:
    view = fold_generation(store.read_stream(generation_stream(generation_id)))
    if view is None:
        raise UnknownGenerationError(
            f"no generation {generation_id!r} in store {store.location.display()}; the id is "
            "printed by `agentledger generate inputs` and kept in the file's generation_config"
        )
    return view


def resolve_generation(reference: str) -> str:
    """A generation id, or the id an inputs file names in its ``generation_config``."""
    path = Path(reference)
    if path.is_file():
        found = recorded_generation(path)
        if found is None:
            raise UnknownGenerationError(
                f"{path} names no generation (no generation_config.generation_id); pass "
                "the generation id"
            )
        return found
    return reference


def _check_intact(store: EventStore, generation_id: str) -> None:
    """A file rewritten from the log is only as good as the log: refuse a generation whose
    events fail verify (edited, deleted, reordered)."""
    from agentledger.eventstore.integrity import verify

    checked = verify(store, generation_id, database=False)
    if checked.ok:
        return
    found = [p.describe() for p in checked.problems] + checked.damage
    raise GenerationError(
        f"generation {generation_id}'s log fails verify ({len(found)} problem(s); first: "
        f"{found[0]}); run `agentledger verify`: the file is not rewritten from it"
    )


def rewrite(
    store: EventStore, reference: str, *, output: Path | None = None, overwrite: bool = False
) -> GenerationResult:
    """Write a completed generation's inputs file again from the log (to ``output``, else
    where it was written), byte for byte; no model is called."""
    generation_id = resolve_generation(reference)
    _check_intact(store, generation_id)
    view = generation_view(store, generation_id)
    if not view.completed:
        state = "was interrupted" if view.interrupted else "has not completed"
        raise GenerationError(
            f"generation {generation_id} {state} ({view.planned - view.pending} of "
            f"{view.planned} calls finished); run `agentledger generate inputs` again"
        )
    if not view.entries:
        raise GenerationError(
            f"generation {generation_id} left no input ({view.failed} failed, "
            f"{view.empty} empty, {view.duplicates} duplicates): no file to write"
        )
    target = output or Path(view.started.output)
    check_output(target, overwrite)
    write_file(target, render(view), overwrite=overwrite)
    return GenerationResult(generation_id, view, target, True)
