"""The shop's use cases, one module per area (docs/conventions.md, "Rooms"); `orders` has the
checkout's flow and its compensations."""
