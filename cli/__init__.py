"""agentledger: cli."""
