"""agentledger: replay."""
