"""comfyui: ComfyUI is installed, current, runs and answers; every running ComfyUI has sage, per-user folders and
a reachable listen address; its log since launch shows no custom node that failed, no out-of-memory and no
install ComfyUI-Manager refused."""
import configparser
import posixpath
import time

import pytest

from podcheck.domain import comfyui, comfyui_log
from podcheck.domain.users import invalid_reason
from podcheck.host import paths

USER_FOLDERS = comfyui.USER_FOLDERS
#: Judged by gpu.torch_set, which comfyui.installed needs (one root cause, one failure).
TORCH_SET = ("torch", "torchvision", "torchaudio")


def running(pod):
    """The ComfyUI processes, or a skip when none runs any more (comfyui.running has said so)."""
    procs = comfyui.processes(pod)
    if not procs:
        pytest.skip(f"no ComfyUI runs {pod.config.pod.comfyui_dir}/main.py")
    return procs


@pytest.mark.podcheck(id="comfyui.installed", repair="comfyui", profiles=("image", "boot", "runtime"),
                      needs=("pod.workspace", "gpu.torch_set"), when="comfyui.enabled")
def test_installed(pod, facts, say, pytestconfig):
    """ComfyUI is in comfyui_dir (main.py, comfy/cli_args.py, custom_nodes/), the pod python meets its
    requirements.txt and imports what ComfyUI imports at start (the requirements' modules, requests)."""
    root = pod.config.pod.comfyui_dir
    if pytestconfig.getoption("pod_profile") == "image" and paths.inside(root, pod.config.pod.workspace):
        pytest.skip(f"ComfyUI is on the workspace volume ({root}), not in the image "
                    "([pod] comfyui_dir is its path in the image when the image holds it)")
    cli_args = pod.read_text(f"{root}/comfy/cli_args.py")
    missing = [name for name, there in (("main.py", pod.exists(f"{root}/main.py")),
                                        ("comfy/cli_args.py", cli_args is not None),
                                        ("custom_nodes/", pod.is_dir(f"{root}/custom_nodes"))) if not there]
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
    failures = {m: why for m, why in (req.get("import_failures") or {}).items() if m not in TORCH_SET}
    assert not failures, (
        f"ComfyUI cannot start: the pod python {pod.config.pod.python} cannot import "
        + "; ".join(f"{module} ({why})" for module, why in failures.items())
        + numpy_abi_remedy(req.get("numpy"), [m for m in req.get("numpy_abi") or [] if m in failures]))
    unparsed = req.get("unparsed") or []
    say(f"ComfyUI in {root}; requirements met" + (f" ({len(unparsed)} line(s) not judged)" if unparsed else ""))


def numpy_abi_remedy(numpy, modules):
    """What to say when `modules` were compiled for another numpy than the installed one ('' if none)."""
    if not modules:
        return ""
    names = ", ".join(modules)
    major = int(numpy.split(".")[0]) if numpy and numpy.split(".")[0].isdigit() else None
    pin = '"numpy<2"' if major is not None and major >= 2 else '"numpy>=2"'
    return (f". numpy {numpy or '(unknown version)'} is not the numpy {names} was compiled for (numpy's ABI "
            f"differs between 1.x and 2.x): pip install {pin} into the pod python, or upgrade {names} to a "
            f"release built for numpy {numpy or 'as installed'}")


@pytest.mark.podcheck(id="comfyui.upstream", repair="comfyui", needs=("comfyui.installed",), when="comfyui.enabled")
def test_upstream(pod, say):
    """When [comfyui] ref names a branch, the checkout is at that branch's newest upstream commit.

    Policy: `--fix` fast-forwards a clean checkout to it (and reinstalls the requirements); a checkout
    with local changes or local commits is left as it is. One `git ls-remote`, bounded by
    [pod] command_timeout; an upstream that cannot be reached is not judged."""
    c, root = pod.config.comfyui, pod.config.pod.comfyui_dir
    if not pod.is_dir(f"{root}/.git"):
        pytest.skip(f"{root} is not a git checkout: nothing to compare with {c.repo}")
    remote = pod.run("git", "ls-remote", "--heads", "--", c.repo, f"refs/heads/{c.ref}",
                     env={"GIT_TERMINAL_PROMPT": "0"})
    if not remote.ok:
        pytest.skip(f"cannot ask {c.repo} for its branches: {remote.why()}")
    newest = next((line.split()[0] for line in remote.stdout.splitlines() if line.strip()), None)
    if newest is None:
        pytest.skip(f"[comfyui] ref {c.ref} is not a branch of {c.repo} (a tag or commit does not move)")
    head = pod.run("git", "-C", root, "rev-parse", "HEAD")
    assert head.ok, f"cannot read the commit of {root}: {head.why()}"
    mine = head.stdout.strip()
    if mine != newest and pod.run("git", "-C", root, "merge-base", "--is-ancestor", newest, mine).ok:
        say(f"{root} at {mine[:10]} is ahead of {c.repo} {c.ref} ({newest[:10]}): local commits, left as they are")
        return
    assert mine == newest, (
        f"{c.repo} {c.ref} has a newer commit {newest[:10]}; {root} is at {mine[:10]} "
        "(--fix fast-forwards a clean checkout and reinstalls the requirements; a checkout with "
        "local changes is left as it is)")
    say(f"{root} is at the newest commit of {c.repo} {c.ref} ({mine[:10]})")


@pytest.mark.podcheck(id="comfyui.running", repair="comfyui.launch", profiles=("runtime",),
                      needs=("pod.workspace", "comfyui.installed"), when="comfyui.enabled")
def test_running(pod, say):
    """A ComfyUI runs main.py of comfyui_dir and answers GET /system_stats on its port in time."""
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
    log = comfyui_log.read_log(pod, pod.config.comfyui.log, max_bytes=16384)
    last = [line.strip() for line in (log.text or "").splitlines() if line.strip()]
    if last:
        message += f"; its log {log.path} ends with: {last[-1][:300]}"
    return message


def _young(proc):
    age = time.time() - proc.started if proc.started else None
    return f" (it started {age:.0f} s ago: still loading?)" if age is not None and 0 <= age < 120 else ""


@pytest.mark.podcheck(id="comfyui.launch_flags", repair="comfyui.relaunch", profiles=("runtime",), when="comfyui.enabled",
                      needs=("comfyui.running",))
def test_launch_flags(pod, say):
    """Every ComfyUI has --use-sage-attention (if required), its own per-user output, input, temp and user
    folders, and its database in its user folder (ComfyUI with --database-url).

    No two ComfyUI processes share one of these folders, and the argv /system_stats reports is the process's own."""
    cfg = pod.config
    procs = running(pod)
    problems, served, lines = [], {}, []
    has_database = comfyui.DATABASE_FLAG in comfyui.flag_names(pod.read_text(f"{cfg.pod.comfyui_dir}/comfy/cli_args.py"))
    for proc in procs:
        wrong, users = _own_folders(proc, cfg.pod.workspace, cfg.pod.comfyui_dir)
        if has_database:
            wrong += _own_database(proc, cfg.pod.comfyui_dir)
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


def _own_database(proc, comfyui_dir):
    """A sqlite database outside the process's own --user-directory (shared by every user on the volume)."""
    db = comfyui.database_path(proc, comfyui_dir)
    user_dir = proc.dirs(comfyui_dir).user
    if db is None or paths.inside(db, user_dir):
        return []
    given = "its --database-url" if proc.args.has(comfyui.DATABASE_FLAG) else "without --database-url, its"
    return [f"{given} database {db} is not in its user folder {user_dir} (ComfyUI keeps it in "
            f"{comfyui_dir}/user/{comfyui.DATABASE_FILE} whatever --user-directory says)"]


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


# --- from the log since launch: custom nodes, out-of-memory, Manager refusals; the listen address ---
# Lines may carry ComfyUI-Manager's `[YYYY-MM-DD HH:MM:SS.mmm] ` prefix.

def run_log(pod):
    """(the processes judged, their lines since launch, the log path), or a skip saying why not."""
    if not pod.config.comfyui.enabled:
        pytest.skip("ComfyUI is not used on this pod ([comfyui] enabled = false)")
    procs = comfyui.processes(pod)
    if not procs:
        pytest.skip(f"no ComfyUI runs {pod.config.pod.comfyui_dir}/main.py (comfyui.running judges that)")
    log = comfyui_log.read_log(pod, pod.config.comfyui.log)
    if log.text is None:
        pytest.skip(f"cannot read ComfyUI's log {log.path} ({log.error}): set [comfyui] log to the file it writes")
    lines = log.text.splitlines()
    judged, start = comfyui_log.since_launch(lines, procs, alone=len(procs) == 1)
    if not judged:
        pytest.skip(f"cannot tell which lines of {log.path} are from pid(s) {', '.join(str(p.pid) for p in procs)}: "
                    "they were not launched by podcheck (no launch banner)")
    return judged, lines[start:], log.path


@pytest.mark.podcheck(id="comfyui.custom_nodes", repair="comfyui.relaunch", profiles=("runtime",),
                      needs=("comfyui.running",), when="comfyui.enabled")
def test_custom_nodes(pod, say):
    """Every custom node loaded at ComfyUI's last start: no `Cannot import ... module for custom nodes` /
    `(IMPORT FAILED)` line since launch. The repair installs a failed node's requirements.txt (torch set
    pinned) and restarts ComfyUI."""
    judged, lines, path = run_log(pod)
    failures = comfyui_log.node_failures(lines)
    who = " and ".join(str(p) for p in judged)
    assert not failures, f"{who} could not load {len(failures)} custom node(s): " + "; ".join(
        f"{f.name} ({'missing module ' + f.missing_module if f.missing_module else f.error[:200]})" for f in failures
    ) + f" (in {path}). Their nodes are missing from every workflow; --fix installs each node's requirements.txt " \
        "with the torch set pinned, then restarts ComfyUI"
    say(f"{who}: every custom node loaded")


OOM_REMEDY = ("in the workflow: a smaller image size or batch, a tiled VAE decode, an fp8 or smaller model; in "
              "ComfyUI's flags: --lowvram (or --novram), --reserve-vram 1.0, --disable-smart-memory; or a GPU with "
              "more memory")


@pytest.mark.podcheck(id="comfyui.oom", profiles=("runtime",), needs=("comfyui.running",), when="comfyui.enabled",
                      remedy="smaller images or batches, tiled VAE decode, an fp8 model; or --lowvram / --reserve-vram")
def test_oom(pod, say):
    """No generation ran out of GPU memory since ComfyUI started (`torch.OutOfMemoryError`, `Allocation on
    device`). No repair: the remedy is in the workflow or the flags, the message says which."""
    judged, lines, path = run_log(pod)
    found = comfyui_log.oom_lines(lines)
    who = " and ".join(str(p) for p in judged)
    assert not found, (f"{who} ran out of GPU memory {len(found)} time(s) since launch; last: {found[-1][:300]} "
                       f"(in {path}). Remedies: {OOM_REMEDY}")
    say(f"{who}: no out-of-memory error since launch")


def manager_config(pod, proc):
    """ComfyUI-Manager's config.ini for a process ({user dir}/default/ComfyUI-Manager/config.ini), parsed."""
    path = posixpath.join(proc.dirs(pod.config.pod.comfyui_dir).user, "default", "ComfyUI-Manager", "config.ini")
    text = pod.read_text(path)
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text or "")
    except configparser.Error:
        pass
    return path, parser.get("default", "security_level", fallback="normal")


@pytest.mark.podcheck(id="comfyui.manager_security", profiles=("runtime",), needs=("comfyui.running",),
                      when="comfyui.enabled", remedy="install the node from the terminal (git clone into custom_nodes), "
                      "then podcheck --fix; or security_level = weak only on a private port")
def test_manager_security(pod, say):
    """ComfyUI-Manager refused no install since launch. Listening beyond loopback (as behind the pod's proxy),
    its security_level `normal` refuses git-URL and pip installs ("To use this feature, you must either set
    '--listen' to a local IP ..."). No repair: lowering the level opens installs to anyone who reaches the port."""
    if not pod.exists(f"{pod.config.pod.comfyui_dir}/custom_nodes/ComfyUI-Manager"):
        pytest.skip("ComfyUI-Manager is not installed (custom_nodes/ComfyUI-Manager)")
    judged, lines, log_path = run_log(pod)
    refused = comfyui_log.manager_refusals(lines)
    notes = []
    for proc in judged:
        path, level = manager_config(pod, proc)
        local = comfyui.is_loopback(proc.args.listen)
        notes.append(f"{proc}: listen {proc.args.listen} ({'loopback' if local else 'beyond loopback'}), "
                     f"security_level {level} ({path})")
    assert not refused, (
        f"ComfyUI-Manager refused {len(refused)} action(s) since launch; last: {refused[-1][:300]} (in {log_path}); "
        f"{'; '.join(notes)}. Beyond loopback, only security_level = weak allows git-URL and pip installs, and "
        "weak lets anyone who reaches the port install code: install the node from the terminal instead "
        "(git clone into custom_nodes, then podcheck --fix installs its requirements and restarts ComfyUI), or "
        "set security_level = weak in that config.ini only on a pod whose port is private")
    say("; ".join(notes) + "; no install refused since launch")


@pytest.mark.podcheck(id="comfyui.listen", repair="comfyui.relaunch", profiles=("runtime",),
                      needs=("comfyui.running",), when="comfyui.enabled")
def test_listen(pod, say):
    """Every ComfyUI listens where the pod's HTTP proxy reaches it: not on loopback alone when [comfyui]
    listen is beyond loopback (RunPod's proxy connects to the pod's address, never to 127.0.0.1)."""
    if not pod.config.comfyui.enabled:
        pytest.skip("ComfyUI is not used on this pod ([comfyui] enabled = false)")
    wanted = pod.config.comfyui.listen
    if comfyui.is_loopback(wanted):
        pytest.skip(f"[comfyui] listen is {wanted}: this pod serves ComfyUI on loopback only (no proxy)")
    procs = comfyui.processes(pod)
    if not procs:
        pytest.skip(f"no ComfyUI runs {pod.config.pod.comfyui_dir}/main.py (comfyui.running judges that)")
    local = [p for p in procs if comfyui.is_loopback(p.args.listen)]
    assert not local, "; ".join(
        f"{p} listens on {p.args.listen} only" + ("" if p.args.has("--listen") else " (no --listen: ComfyUI's default)")
        for p in local) + (f": the pod's HTTP proxy cannot reach it; [comfyui] listen is {wanted} "
                           "(--fix restarts it with --listen from the config)")
    say("; ".join(f"{p} listens on {p.args.listen}" for p in procs))
