"""Byte-level MIME: raw messages, parts, the footer and the copies the list sends, rebuilt
without re-serialising what does not change."""
