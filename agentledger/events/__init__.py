"""agentledger: events.

Payload modules register their types on import: ``payloads`` (the catalog most commands
use) at once, ``evaluation`` and ``generation`` when a type of theirs is first looked up
(``payloads.payload_class``), so any code that reads the log knows every type.
"""
