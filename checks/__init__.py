"""podcheck's health checks: pytest modules, one per area. Each check is marked with its id,
its repair and the checks it needs first; its assertion message is the diagnosis."""
