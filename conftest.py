"""Lets `pytest checks/` run the health checks from a source checkout (loads the podcheck plugin)."""
pytest_plugins = ["podcheck.plugin"]
