"""Lets `pytest checks/` run the health checks from a source checkout (loads the podcheck plugin), and
gives the `>>>` examples of podcheck's modules (run by --doctest-modules) a pod to work on."""
import pytest

pytest_plugins = ["podcheck.plugin"]

# Run by the pod's python or as `python -m`, not importable for doctests; the ComfyUI stand-ins are programs.
collect_ignore_glob = ["podcheck/probe.py", "podcheck/__main__.py", "tests/standins/*", "tests/realparts/*"]


@pytest.fixture(autouse=True)
def _doctest_pod(request, doctest_namespace, tmp_path):
    """`workspace` (a temp folder), `cfg` (the config of a pod on it) and `pod` for docstring examples."""
    if type(request.node).__name__ != "DoctestItem":
        return
    import testinfra

    from podcheck import config
    from podcheck.host.pod import Pod

    workspace = tmp_path / "workspace"
    workspace.mkdir()
    cfg = config.load(None, env={"PODCHECK_WORKSPACE": str(workspace), "HOME": str(tmp_path)})
    doctest_namespace.update(workspace=workspace, cfg=cfg, pod=Pod(cfg, testinfra.get_host("local://")),
                             testinfra=testinfra)
