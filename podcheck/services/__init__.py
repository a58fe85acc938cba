"""The long-running modes and the diagnostic report: watch, serve, diagnostics."""
