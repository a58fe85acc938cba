"""system: binaries the pod's workloads need from the OS."""
import pytest


@pytest.mark.podcheck(id="system.ffmpeg", repair="ffmpeg", profiles=("image", "boot", "runtime"))
def test_ffmpeg(pod, say):
    """ffmpeg runs (video outputs of VideoHelperSuite and friends need the binary)."""
    ran = pod.run("ffmpeg", "-version")
    assert not ran.not_found, (
        "ffmpeg not found on PATH: video nodes fail with 'No valid ffmpeg found'; "
        "install it with the system package manager")
    assert ran.ok, f"ffmpeg does not run: {ran.why()}"
    first = ran.stdout.splitlines()[0] if ran.stdout else ""
    say(first.split(" Copyright")[0].replace("ffmpeg version ", "ffmpeg "))
