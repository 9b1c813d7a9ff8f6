"""agentledger's public API for agent code: the run context and argument capture.

``RunContext`` is what an agent's ``ctx`` parameter receives; ``current_context()`` finds
it from deeper code. ``record_args`` / ``recorded_args`` capture production call arguments
as ``ArgsRecorded`` events for argument replay. Re-exports only.
"""

from runner.args import record_args, recorded_args
from runner.context import RunContext, current_context

__all__ = ["RunContext", "current_context", "record_args", "recorded_args"]
