"""agentledger: projections."""
