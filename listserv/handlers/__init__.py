"""One module per kind of incoming mail; each exposes `handle(ctx) -> outcome`."""
