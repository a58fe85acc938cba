"""isolation: on a volume several pods and people share, each person's files stay in their own folders."""
import posixpath

import pytest

from podcheck.domain import users
from podcheck.host import paths


def describe(where):
    kind, user = where
    return f"{user}'s {kind} folder" if user else f"the {kind} folder of every user"


@pytest.mark.podcheck(id="isolation.no_shared_links", repair="isolation.unlink", needs=("pod.workspace",))
def test_no_shared_links(pod, say):
    """ComfyUI's output, input and workflows folders are not symlinks into a user's folder on the shared volume."""
    if not pod.config.comfyui.enabled:
        pytest.skip("ComfyUI is not used on this pod ([comfyui] enabled = false)")
    root, workspace = pod.config.pod.comfyui_dir, pod.config.pod.workspace
    entries = paths.inspect(pod, [workspace] + [f"{root}/{name}" for name in users.SHARED_LINKS])
    real_workspace = entries[posixpath.normpath(workspace)].resolved
    links = []
    for name in users.SHARED_LINKS:
        entry = entries[posixpath.normpath(f"{root}/{name}")]
        where = users.owner(entry.resolved, real_workspace) if entry.is_link else None
        if where:
            links.append(f"{entry.path} is a symlink to {entry.resolved} ({describe(where)})")
    assert not links, (
        "; ".join(links) + ". Every pod on the volume sees this one link: the last pod to start wins and every "
        "ComfyUI writes into that folder. Give each ComfyUI its own --output-directory / --input-directory instead "
        "(the link is removed as a link, never what it points to)")
    say(f"no symlink from {root} into a user's folder")


@pytest.mark.podcheck(id="isolation.user_dirs", repair="isolation.user_dirs", needs=("pod.workspace",))
def test_user_dirs(pod, say):
    """Every user has a valid name and real folders output/<u>, input/<u>, workflows/<u> of their own."""
    cfg = pod.config.pod
    names = users.users(pod)
    if not names:
        pytest.skip(f"no users: set [pod] user or [pod] users, or create {cfg.workspace}/output/<user>")
    problems = [f"user name {name!r} {why}" for name in names if (why := users.invalid_reason(name))]
    valid = [name for name in names if not users.invalid_reason(name)]
    wanted = {(kind, name): f"{cfg.workspace}/{kind}/{name}" for name in valid for kind in users.KINDS}
    entries = paths.inspect(pod, [cfg.workspace] + list(wanted.values()))
    real_workspace = entries[posixpath.normpath(cfg.workspace)].resolved
    for name in valid:
        for kind in users.KINDS:
            entry = entries[wanted[(kind, name)]]
            problem = _folder_problem(entry, (kind, name), real_workspace)
            if problem:
                problems.append(f"{kind}/{name} {problem}")
    assert not problems, (
        f"per-user folders in {cfg.workspace}: " + "; ".join(problems)
        + " (an invalid name needs a rename by hand)")
    say(f"{len(valid)} user(s): {', '.join(valid)}")


def _folder_problem(entry, mine, real_workspace):
    """Why `entry` cannot be the folder `mine` = (kind, user), or None when it can."""
    if entry.kind == "missing":
        return "is missing"
    if entry.kind == "link":
        where = users.owner(entry.resolved, real_workspace)
        if not paths.inside(entry.resolved, real_workspace):
            return f"is a symlink out of the workspace, to {entry.resolved}"
        if where and where != mine:
            return f"is a symlink to {entry.resolved} ({describe(where)}): {mine[1]}'s files land there"
        if entry.resolved_kind != "dir":
            return f"is a symlink to {entry.resolved}, which is {'missing' if entry.resolved_kind == 'missing' else 'not a folder'}"
        return None
    if entry.kind != "dir":
        return f"is a {entry.kind}, not a folder"
    return None
