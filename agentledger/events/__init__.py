"""agentledger: events."""
