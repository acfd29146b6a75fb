"""The chair's actions, shared by the command line and the chair's replies by mail."""
