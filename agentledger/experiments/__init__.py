"""agentledger: experiments."""
