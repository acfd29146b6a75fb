"""Completing what a confirmation token names (join, leave, set, resubscribe, peer input), for replies by mail and for the web endpoint alike."""
