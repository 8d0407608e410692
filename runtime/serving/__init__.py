"""HTTP serving: the dynamic batcher, the ASGI app, its guard, limits and CLI."""
