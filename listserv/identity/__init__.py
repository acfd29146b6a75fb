"""Who sent a message (SPEC §2): the proofs a message can carry, computed once by the router."""
