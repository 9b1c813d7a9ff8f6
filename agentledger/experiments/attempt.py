"""One attempt of a slot: a call of the target, or a whole conversation, and its outcome.

The runner hands ``run_attempt`` the prepared experiment, the slot and its RunContext;
sync targets run on the runner's thread pool, async ones on the event loop, all within
the run's timeout. The ``Outcome`` says how it went; a replayed run that left its
recording is turned into a divergence failure by ``check_replay``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentledger.experiments import fluxloop_sdk, inline
from agentledger.experiments.context import RunContext, jsonable
from agentledger.experiments.conversation import Conversation, blocking_decider, conversation_values
from agentledger.experiments.plan import Slot
from agentledger.experiments.supervisor import Supervisor
from agentledger.experiments.targets import Target
from agentledger.replay.args import fill_masked
from agentledger.replay.book import RecordMode
from agentledger.replay.callables import Collector, collected_output, restore_callables

if TYPE_CHECKING:
    from agentledger.experiments.prepare import PreparedExperiment

log = logging.getLogger("agentledger.runner")


def _combine(chunks: list[Any]) -> Any:
    """A generator target's output: its string chunks joined, else the list of items."""
    if all(isinstance(c, str) for c in chunks):
        return "".join(chunks)
    return chunks


class AgentExit(Exception):
    """The agent raised ``SystemExit`` (``sys.exit()``) or ``KeyboardInterrupt`` itself: its
    run fails with that as the reason; the experiment goes on."""


def _agent_raised(exc: BaseException) -> bool:
    """Whether a ``KeyboardInterrupt`` came from the agent rather than from Ctrl-C: off the
    main thread, or under the command's own Ctrl-C handling, it cannot be a real one."""
    if isinstance(exc, SystemExit):
        return True
    return threading.current_thread() is not threading.main_thread() or inline.handles_sigint()


def _call_sync(
    target: Target, args: list[Any], kwargs: dict[str, Any], sdk_trace: str | None = None
) -> Any:
    if sdk_trace is not None:
        with fluxloop_sdk.instrumented(sdk_trace):
            return _call_sync(target, args, kwargs)
    try:
        result = target.fn(*args, **kwargs)
        if target.kind == "generator":
            return _combine(list(result))
        return result
    except (SystemExit, KeyboardInterrupt) as exc:
        if not _agent_raised(exc):
            raise
        raise AgentExit(f"the agent raised {type(exc).__name__}({_exit_detail(exc)})") from exc


async def _call_async(
    target: Target, args: list[Any], kwargs: dict[str, Any], sdk_trace: str | None = None
) -> Any:
    if sdk_trace is not None:
        with fluxloop_sdk.instrumented(sdk_trace):
            return await _call_async(target, args, kwargs)
    try:
        if target.kind == "async_generator":
            return _combine([chunk async for chunk in target.fn(*args, **kwargs)])
        return await target.fn(*args, **kwargs)
    except (SystemExit, KeyboardInterrupt) as exc:
        # In a task these would stop the event loop itself, ending every run at once.
        raise AgentExit(f"the agent raised {type(exc).__name__}({_exit_detail(exc)})") from exc


def _exit_detail(exc: BaseException) -> str:
    return repr(exc.code) if isinstance(exc, SystemExit) else ""


def sdk_trace_name(experiment: str, slot: Slot) -> str | None:
    """The FluxLoop trace name of a slot's calls (FluxLoop's own naming), when the target's
    project uses the FluxLoop SDK; None otherwise."""
    if not fluxloop_sdk.in_use():
        return None
    fluxloop_sdk.install()
    name = f"{experiment}_iter{slot.iteration}"
    return f"{name}_persona_{slot.input.persona}" if slot.input.persona else name


@dataclass
class Outcome:
    ok: bool
    output: Any = None
    error_type: str = ""
    error_message: str = ""
    traceback: str | None = None
    reason: str = "exception"
    duration_ms: float = 0.0
    divergence: dict[str, Any] | None = None
    turn_count: int = 1
    conversation_state: str | None = None
    termination_reason: str | None = None


CANCEL_GRACE_SECONDS = 1.0
"""How long a timed-out async run gets to end after it is cancelled before it is abandoned."""
ABANDONED: set[asyncio.Task[Any]] = set()
"""Runs that would not end when cancelled (they catch CancelledError): kept referenced, so
nothing waits for them or complains when the loop closes without them."""


class RunTimedOut(Exception):
    """The run did not finish within its timeout."""


async def within(work: Coroutine[Any, Any, Any], timeout: float | None) -> Any:
    """Await ``work`` for at most ``timeout`` seconds (its own task, so that a target that
    swallows cancellation cannot hold this up): past it, the task is cancelled, given
    ``CANCEL_GRACE_SECONDS`` to end, and abandoned if it does not; ``RunTimedOut``."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:  # the experiment was interrupted
        task.cancel()
        raise
    if done:
        return task.result()
    task.cancel()
    await asyncio.wait({task}, timeout=CANCEL_GRACE_SECONDS)
    if not task.done():
        ABANDONED.add(task)
    raise RunTimedOut


async def run_attempt(
    prepared: PreparedExperiment,
    slot: Slot,
    ctx: RunContext,
    pool: ThreadPoolExecutor,
    supervisor: Supervisor | None,
    *,
    on_this_thread: Callable[[], None] | None = None,
) -> Outcome:
    """One attempt of a slot: one call of the target, or a whole conversation. The
    context (and its seeded ``random``) lives for the whole slot, so a retry continues
    the random sequence instead of repeating it. With ``on_this_thread`` (one run at a time,
    on the main thread: what to call when Ctrl-C interrupts the run) a sync single-turn
    target is called right here (see ``inline``)."""
    settings, target = prepared.settings, prepared.target
    loop = asyncio.get_running_loop()
    base = {
        "input": slot.input.input,
        "persona": slot.input.persona,
        "iteration": slot.iteration,
        "metadata": dict(slot.input.metadata),
        "ctx": ctx,
    }
    recorded = (
        fill_masked(slot.input.call_args, prepared.argument_secrets)
        if slot.input.call_args is not None
        else None
    )

    async def run_blocking(fn: Callable[[], Any]) -> Any:
        return await loop.run_in_executor(pool, contextvars.copy_context().run, fn)

    sdk_trace = sdk_trace_name(settings.name, slot)

    def arguments(turn: dict[str, Any]) -> tuple[list[Any], dict[str, Any], list[Collector]]:
        values = {**base, **turn}
        if recorded is None:
            args, kwargs = target.arguments(values)
            return args, kwargs, []
        restored, collectors = restore_callables(recorded, prepared.argument_callables)
        return [], target.replay_arguments(restored, values), collectors

    async def invoke(turn: dict[str, Any]) -> Any:
        args, kwargs, collectors = arguments(turn)
        if target.is_async:
            output = await _call_async(target, args, kwargs, sdk_trace)
        else:
            call = functools.partial(_call_sync, target, args, kwargs, sdk_trace)
            output = await run_blocking(call)
        return collected_output(output, collectors)

    if on_this_thread is not None and not target.is_async and settings.multi_turn is None:
        timeout = settings.timeout_seconds
        return _run_inline(target, slot, ctx, arguments, sdk_trace, timeout, on_this_thread)

    multi_turn = settings.multi_turn
    conversation = Conversation(multi_turn, ctx) if multi_turn is not None else None
    token = ctx.activate()
    started = time.perf_counter()
    timeout = settings.timeout_seconds
    termination: str | None = None

    async def body() -> Any:
        nonlocal termination
        if conversation is not None:
            assert supervisor is not None
            decide = blocking_decider(supervisor, ctx, run_blocking)
            termination = await conversation.run(slot.input.input, invoke, decide)
            return conversation.output
        if target.binds_conversation:
            first = [{"role": "user", "content": slot.input.input}]
            return await invoke(conversation_values(first, 0, slot.input.persona, 1))
        return await invoke({})

    try:
        output = await within(body(), timeout)
    except RunTimedOut:
        elapsed = elapsed_ms(started)
        if not target.is_async:
            log.warning(
                "run %s timed out after %ss; its thread cannot be stopped and is left "
                "to finish, its result discarded",
                slot.trace_id,
                timeout,
            )
        return ended(
            Outcome(
                False,
                error_type="Timeout",
                error_message=f"run exceeded the {timeout:g} s timeout",
                reason="timeout",
                duration_ms=elapsed,
            ),
            conversation,
            "timeout",
        )
    except Exception as exc:
        return ended(failure(exc, elapsed_ms(started)), conversation, "error")
    finally:
        ctx.deactivate(token)
    outcome = Outcome(True, output=jsonable(output), duration_ms=elapsed_ms(started))
    if conversation is not None:
        state = "terminated" if termination == "max_turns" else "completed"
        return ended(outcome, conversation, termination or "completed", state)
    return outcome


Arguments = Callable[[dict[str, Any]], tuple[list[Any], dict[str, Any], list[Collector]]]


def _run_inline(
    target: Target,
    slot: Slot,
    ctx: RunContext,
    arguments: Arguments,
    sdk_trace: str | None,
    timeout: float | None,
    on_interrupt: Callable[[], None],
) -> Outcome:
    """One call of a sync single-turn target on this thread, its timeout kept by an alarm.
    A run that outlived its timeout timed out, whatever it did about the alarm (swallowed
    it, wrapped it in another exception, cancelled or replaced it): as on a pool thread,
    where its result would have been discarded."""
    turn: dict[str, Any] = {}
    if target.binds_conversation:
        first = [{"role": "user", "content": slot.input.input}]
        turn = conversation_values(first, 0, slot.input.persona, 1)
    token = ctx.activate()
    started = time.perf_counter()
    output: Any = None
    problem: Exception | None = None
    fired = False
    try:
        try:
            with inline.deadline(timeout, slot.trace_id, on_interrupt) as alarm:
                try:
                    args, kwargs, collectors = arguments(turn)
                    output = collected_output(
                        _call_sync(target, args, kwargs, sdk_trace), collectors
                    )
                except Exception as exc:
                    problem = exc
                fired = alarm.fired > 0
        except inline.Deadline:
            fired = True
    except inline.Interrupted:
        raise asyncio.CancelledError from None
    finally:
        ctx.deactivate(token)
    duration = elapsed_ms(started)
    if timeout is not None and (fired or duration > timeout * 1000):
        return Outcome(
            False,
            error_type="Timeout",
            error_message=f"run exceeded the {timeout:g} s timeout",
            reason="timeout",
            duration_ms=duration,
        )
    if problem is not None:
        return failure(problem, duration)
    return Outcome(True, output=jsonable(output), duration_ms=duration)


def check_replay(ctx: RunContext, outcome: Outcome) -> Outcome:
    """A replayed run that left its recording fails with the first divergence, whatever
    the agent made of the refused call; in ``replay`` mode so does one that made fewer
    calls than were recorded."""
    state = ctx.replay
    if state is None:
        return outcome
    if ctx.divergence is None and outcome.ok and state.mode is RecordMode.REPLAY:
        missing = state.book.unused()
        if missing is not None:
            ctx.diverge(missing)
    if ctx.divergence is None:
        return outcome
    return Outcome(
        False,
        output=outcome.output,
        error_type="ReplayDivergence",
        error_message=ctx.divergence.message(),
        reason="divergence",
        duration_ms=outcome.duration_ms,
        divergence=ctx.divergence.as_dict(),
    )


def ended(
    outcome: Outcome,
    conversation: Conversation | None,
    termination: str,
    state: str = "terminated",
) -> Outcome:
    """``outcome`` with how its conversation ended (single-turn runs are left as they are)."""
    if conversation is None:
        return outcome
    outcome.turn_count = conversation.turns_done
    outcome.conversation_state = state
    outcome.termination_reason = termination
    if not outcome.ok and conversation.output is not None:
        outcome.output = conversation.output
    return outcome


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def failure(exc: BaseException, duration_ms: float) -> Outcome:
    if isinstance(exc, AgentExit) and exc.__cause__ is not None:
        return Outcome(
            False,
            error_type=type(exc.__cause__).__name__,
            error_message=str(exc),
            traceback="".join(traceback.format_exception(exc.__cause__)),
            duration_ms=duration_ms,
        )
    return Outcome(
        False,
        error_type=type(exc).__name__,
        error_message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        duration_ms=duration_ms,
    )
