"""agentledger tests."""
