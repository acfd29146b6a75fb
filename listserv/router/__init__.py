"""From a stored inbound message to a handler: the sender's identity, one guard pipeline, dispatch by role."""
