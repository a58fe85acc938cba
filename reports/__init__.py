"""Renderers of podcheck results: terminal table, JSON, JUnit (and, for people, Markdown/HTML)."""
