"""Pure decisions: no I/O, no asyncio; `now` and `rng` are arguments."""
