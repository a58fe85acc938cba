"""The pod's host as podcheck reaches it: commands with timeouts, processes, paths, files, state."""
