"""agentledger: events."""

# Every payload module registers its types on import; importing them here means any code
# that reads the log (verify, events list, export/import) knows every type.
from agentledger.events import evaluation as evaluation
from agentledger.events import generation as generation
