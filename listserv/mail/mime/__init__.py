"""Byte-level MIME: split and rebuild messages without re-serialising what does not change."""
