"""podcheck's repairs: one module per area; idempotent, safe on a shared volume."""
