"""disk: room on the workspace volume."""
import pytest

from podcheck.domain.caches import human


@pytest.mark.podcheck(id="disk.workspace", needs=("pod.workspace",),
                      remedy="free space on the volume (old outputs, unused models, pip caches) or grow it")
def test_workspace(pod, say):
    """The workspace's filesystem has at least min_free_gib and min_free_inodes free."""
    cfg, workspace = pod.config.disk, pod.config.pod.workspace
    ran = pod.run("stat", "-f", "-c", "%a %S %d %c %b", workspace)
    if not ran.ok:
        pytest.skip(f"cannot stat the filesystem of {workspace}: {ran.why()}")
    avail_blocks, block, free_inodes, inodes, blocks = (int(x) for x in ran.stdout.split())
    free, total = avail_blocks * block, blocks * block
    problems = []
    if free < cfg.min_free_gib * 1024 ** 3:
        problems.append(f"{human(free)} free of {human(total)} (below [disk] min_free_gib = {cfg.min_free_gib:g})")
    if inodes and free_inodes < cfg.min_free_inodes:
        problems.append(f"{free_inodes} free inodes of {inodes} (below [disk] min_free_inodes = {cfg.min_free_inodes})")
    if problems:
        du = pod.run("du", "-x", "-d", "1", "-B1", workspace, timeout=30)
        sizes = []
        for line in du.stdout.splitlines():
            size, _, path = line.partition("\t")
            if path.rstrip("/") != workspace.rstrip("/") and size.isdigit():
                sizes.append((int(size), path))
        largest = ", ".join(f"{path} {human(size)}" for size, path in sorted(sizes, reverse=True)[:5])
        pytest.fail(f"workspace {workspace} is nearly full: " + "; ".join(problems)
                    + (f". Largest folders: {largest}" if largest else "")
                    + ". Saves and downloads will fail: move or delete old outputs, models or checkpoints",
                    pytrace=False)
    say(f"{human(free)} free of {human(total)}, {free_inodes} inodes free")
