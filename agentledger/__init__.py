"""agentledger: agentledger."""
