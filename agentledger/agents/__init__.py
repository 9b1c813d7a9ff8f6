"""agentledger: agents."""
