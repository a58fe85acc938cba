"""The fix engine: the repair model, the planner, the fixer, markers, the volume lock, the background worker."""
