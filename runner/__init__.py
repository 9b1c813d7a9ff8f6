"""agentledger: runner."""
