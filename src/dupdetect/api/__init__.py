"""HTTP layer: thin controllers, msgspec request/response Structs, error mapping."""
