"""comfyui: ComfyUI is installed, runs and answers, and every running ComfyUI has sage and per-user folders."""
import time

import pytest

from podcheck.domain import comfyui
from podcheck.domain.users import invalid_reason
from podcheck.host import paths

USER_FOLDERS = comfyui.USER_FOLDERS


def skip_unless_enabled(pod):
    if not pod.config.comfyui.enabled:
        pytest.skip("ComfyUI is not used on this pod ([comfyui] enabled = false)")


def running(pod):
    """The ComfyUI processes, or a skip when none runs any more (comfyui.running has said so)."""
    procs = comfyui.processes(pod)
    if not procs:
        pytest.skip(f"no ComfyUI runs {pod.config.pod.comfyui_dir}/main.py")
    return procs


@pytest.mark.podcheck(id="comfyui.installed", repair="comfyui", needs=("pod.workspace",))
def test_installed(pod, facts, say):
    """ComfyUI is in comfyui_dir (main.py, comfy/cli_args.py) and the pod python meets its requirements.txt."""
    skip_unless_enabled(pod)
    root = pod.config.pod.comfyui_dir
    cli_args = pod.read_text(f"{root}/comfy/cli_args.py")
    missing = [name for name, there in (("main.py", pod.exists(f"{root}/main.py")),
                                        ("comfy/cli_args.py", cli_args is not None)) if not there]
    assert not missing, f"no ComfyUI in {root}: {' and '.join(missing)} missing"
    if pod.config.attention.sage == "required":
        assert "--use-sage-attention" in comfyui.flag_names(cli_args), (
            f"the ComfyUI in {root} is too old for sage: its comfy/cli_args.py has no --use-sage-attention "
            "(added in December 2024); update ComfyUI")
    req = facts.requirements
    assert req, f"cannot judge ComfyUI's requirements: {facts.probe_error or 'the probe printed nothing about them'}"
    assert not req.get("error"), f"cannot read {root}/requirements.txt: {req['error']}"
    unmet = [f"missing {line}" for line in req.get("missing") or []] + list(req.get("mismatched") or [])
    assert not unmet, (
        f"the pod python {pod.config.pod.python} does not meet {root}/requirements.txt: {'; '.join(unmet)}")
    unparsed = req.get("unparsed") or []
    say(f"ComfyUI in {root}; requirements met" + (f" ({len(unparsed)} line(s) not judged)" if unparsed else ""))


@pytest.mark.podcheck(id="comfyui.running", repair="comfyui.launch", profiles=("runtime",), needs=("pod.workspace",))
def test_running(pod, say):
    """A ComfyUI runs main.py of comfyui_dir and answers GET /system_stats on its port in time."""
    skip_unless_enabled(pod)
    procs = comfyui.processes(pod)
    assert procs, _nothing_runs(pod)
    silent, answered = [], []
    for proc in procs:
        answer = comfyui.request(pod, proc.url("/system_stats"))
        if answer.ok and isinstance(answer.data, dict):
            version = (answer.data.get("system") or {}).get("comfyui_version") or "unknown version"
            answered.append(f"{proc}: ComfyUI {version}, answered in {answer.seconds:.2f} s")
        else:
            why = answer.error or f"HTTP {answer.status}"
            silent.append(f"{proc} does not answer GET {answer.url}: {why}{_young(proc)}")
    assert not silent, "; ".join(silent)
    say("; ".join(answered))


def _nothing_runs(pod):
    message = f"no ComfyUI runs: no process runs {pod.config.pod.comfyui_dir}/main.py"
    log = comfyui.read_log(pod, pod.config.comfyui.log, max_bytes=16384)
    last = [line.strip() for line in (log.text or "").splitlines() if line.strip()]
    if last:
        message += f"; its log {log.path} ends with: {last[-1][:300]}"
    return message


def _young(proc):
    age = time.time() - proc.started if proc.started else None
    return f" (it started {age:.0f} s ago: still loading?)" if age is not None and 0 <= age < 120 else ""


@pytest.mark.podcheck(id="comfyui.launch_flags", repair="comfyui.relaunch", profiles=("runtime",),
                      needs=("comfyui.running",))
def test_launch_flags(pod, say):
    """Every ComfyUI has --use-sage-attention (if required) and its own per-user output, input and temp folders.

    No two ComfyUI processes share one of these folders, and the argv /system_stats reports is the process's own."""
    skip_unless_enabled(pod)
    cfg = pod.config
    procs = running(pod)
    problems, served, lines = [], {}, []
    for proc in procs:
        wrong, users = _own_folders(proc, cfg.pod.workspace, cfg.pod.comfyui_dir)
        if cfg.attention.sage == "required" and not proc.args.use_sage_attention:
            wrong.insert(0, "no --use-sage-attention" + (f" (it asks for {proc.args.attention})" if proc.args.attention else ""))
        wrong += _answering_process(pod, proc)
        user = ", ".join(sorted(users)) or "no user"
        served[proc.pid] = users
        if wrong:
            problems.append(f"{proc} for {user}: {'; '.join(wrong)}")
        else:
            lines.append(f"{proc} for {user}" + (", sage" if proc.args.use_sage_attention else ""))
    problems += _shared_folders(pod, procs)
    me = cfg.pod.user
    if me and not any(me in users for users in served.values()):
        problems.append(f"no ComfyUI serves this pod's user {me} ([pod] user)")
    assert not problems, "; ".join(problems)
    say("; ".join(lines))


def _own_folders(proc, workspace, comfyui_dir):
    """What is wrong with a process's output, input and temp options, and the users they belong to."""
    wrong, users = [], set()
    dirs = proc.dirs(comfyui_dir)
    for flag, kind in USER_FOLDERS:
        value = proc.args.get(flag)
        root = f"{workspace}/{kind}"
        if value is None:
            wrong.append(f"no {flag} (so it uses {getattr(dirs, kind)}, shared by every pod on the volume)")
            continue
        path = proc.path(value)
        user = _user_of(path, root)
        if user is None:
            wrong.append(f"{flag} {value} is not inside {root}/<user>")
        elif invalid_reason(user):
            wrong.append(f"{flag} {value} names user {user!r}, whose name {invalid_reason(user)}")
        else:
            users.add(user)
    if len(users) > 1:
        wrong.append(f"its folders belong to different users ({', '.join(sorted(users))})")
    return wrong, users


def _user_of(path, root):
    """The first folder name below `root` on `path`, or None when `path` is not below `root`."""
    if not paths.inside(path, root) or path.rstrip("/") == root.rstrip("/"):
        return None
    return path[len(root.rstrip("/")) + 1:].split("/", 1)[0]


def _answering_process(pod, proc):
    """A process whose port is answered by another ComfyUI (its /system_stats argv differs)."""
    answer = comfyui.request(pod, proc.url("/system_stats"))
    argv = (answer.data.get("system") or {}).get("argv") if answer.ok and isinstance(answer.data, dict) else None
    if isinstance(argv, list) and argv[1:] != proc.options:
        return [f"port {proc.port} is answered by another ComfyUI: its /system_stats argv is "
                f"{' '.join(map(str, argv[1:])) or '(no options)'}, this process runs {' '.join(proc.options) or '(no options)'}"]
    return []


def _shared_folders(pod, procs):
    """Folders (symlinks followed) that two ComfyUI processes both use."""
    if len(procs) < 2:
        return []
    comfyui_dir = pod.config.pod.comfyui_dir
    used = [(proc, kind, getattr(proc.dirs(comfyui_dir), kind)) for proc in procs for _, kind in USER_FOLDERS]
    by_folder = {}
    for (proc, kind, _), real in zip(used, paths.resolve(pod, [u[2] for u in used])):
        by_folder.setdefault(real, []).append((proc, kind))
    out = []
    for real, users in by_folder.items():
        pids = sorted({proc.pid for proc, _ in users})
        if len(pids) > 1:
            kinds = "/".join(sorted({kind for _, kind in users}))
            note = " (ComfyUI empties its temp folder at start and exit)" if "temp" in kinds else ""
            out.append(f"pids {', '.join(map(str, pids))} share the {kinds} folder {real}{note}")
    return out
