"""pod: the workspace every other check builds on."""
import pytest


@pytest.mark.podcheck(id="pod.workspace", profiles=("boot", "runtime"),
                      remedy="attach the network volume at [pod] workspace, or set [pod] workspace")
def test_workspace(pod, say):
    """The workspace (the network volume) is a directory podcheck can write to."""
    workspace = pod.config.pod.workspace
    ran = pod.run("test", "-d", workspace)
    assert ran.ok, (
        f"no workspace at {workspace}: attach the network volume there, "
        "or point [pod] workspace / $PODCHECK_WORKSPACE at it")
    assert pod.run("test", "-w", workspace).ok, f"workspace {workspace} is not writable by {pod.host.user().name}"
    say(workspace)
