"""Joining and leaving: confirmations, goodbyes with an undo, the chair's approval."""
