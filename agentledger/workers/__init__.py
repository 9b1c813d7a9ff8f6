"""agentledger: workers."""
