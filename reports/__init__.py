"""Renderers of podcheck results (terminal table, JSON, JUnit, Markdown, HTML, Prometheus) and the
one redaction layer (redact.py) that everything printed or written goes through."""
