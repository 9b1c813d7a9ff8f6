"""agentledger: models."""
