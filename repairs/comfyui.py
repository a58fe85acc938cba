"""Repairs of the comfyui area: install or update ComfyUI and its requirements; launch and relaunch it.

`comfyui` clones `[comfyui] repo` at `ref` into comfyui_dir, or fast-forwards a clean checkout when
the installed source is too old, the configured repo/ref changed, or `ref` is a branch with a newer
upstream commit (comfyui.upstream); a checkout with local changes or commits is never touched. Then it
installs requirements.txt into the pod python with the installed torch set (torch, torchvision,
torchaudio) pinned in a constraints file, so the requirements never move torch. Git and pip run
only when due: the fingerprint is read from files (requirements.txt, .git/HEAD), not from git.
"""
from __future__ import annotations

import posixpath
import time
from functools import partial
from typing import Any

from podcheck.domain import comfyui, comfyui_log
from podcheck.domain.users import invalid_reason
from podcheck.fix.pip import installed_version, pip_failure, pip_install
from podcheck.fix.repair import Context, Outcome, Repair, register
from podcheck.host import procs, shell

#: Installed builds pinned while ComfyUI's requirements are installed.
PINNED = ("torch", "torchvision", "torchaudio")

# requirements.txt's sha256 and the checked-out commit, from files alone (a `git` here would cost a
# process on every --fix of a healthy pod): HEAD, then the ref it names, loose or packed.
_SOURCE = r"""
r="$1"; sha256sum -- "$r/requirements.txt" 2>/dev/null | cut -d' ' -f1; echo
d="$r/.git"; [ -f "$d/HEAD" ] || exit 0
h=$(cat "$d/HEAD")
case "$h" in
  "ref: "*) n=${h#ref: }; if [ -f "$d/$n" ]; then cat "$d/$n"; else grep " $n\$" "$d/packed-refs" 2>/dev/null | cut -d' ' -f1; fi;;
  *) echo "$h";;
esac
"""


def source(ctx: Context) -> tuple[str | None, str | None]:
    """(sha256 of requirements.txt, checked-out commit), each None when absent."""
    ran = ctx.probe("sh", "-c", _SOURCE, "sh", ctx.cfg.pod.comfyui_dir)
    lines = (ran.stdout.split("\n") + ["", ""])[:3] if ran.ok else ["", "", ""]
    return lines[0].strip() or None, lines[2].strip() or None


def git(ctx: Context, *args: str, timeout: float | None = None, reads: bool = False):
    """git in the checkout; `reads`: a query (status, symbolic-ref) that runs in a dry run too."""
    run = ctx.probe if reads else ctx.run
    return run("git", "-C", ctx.cfg.pod.comfyui_dir, *args, timeout=timeout or ctx.install_timeout(),
               env={"GIT_TERMINAL_PROMPT": "0"})


@register
class ComfyUI(Repair):
    id = "comfyui"
    order = 40
    description = "clone or fast-forward ComfyUI ([comfyui] repo, ref) and install its requirements, torch pinned"
    needs = ("torch",)
    slow = True
    blast = "replaces-packages"

    def inputs(self, ctx: Context) -> dict[str, Any]:
        requirements, commit = source(ctx)
        return {"repo": ctx.cfg.comfyui.repo, "ref": ctx.cfg.comfyui.ref, "commit": commit,
                "requirements_sha256": requirements}

    # --- plan ---------------------------------------------------------------------------------

    def _pip(self, ctx: Context) -> list[str]:
        root = ctx.cfg.pod.comfyui_dir
        # No torch index here: the torch set is installed (repair: torch) and pinned by the constraints,
        # so pip never looks for torch, torchvision or torchaudio (an index of the wrong CUDA made it
        # retry every package).
        # with what ComfyUI imports without listing it (0.3.64: requests)
        return pip_install(ctx, "-r", f"{root}/requirements.txt", *comfyui.unlisted_imports(ctx.pod, root),
                           "-c", self._constraints_path(ctx))

    def _constraints_path(self, ctx: Context) -> str:
        return constraints_path(ctx)

    # --- apply --------------------------------------------------------------------------------

    def apply(self, ctx: Context) -> Outcome:
        root, c = ctx.cfg.pod.comfyui_dir, ctx.cfg.comfyui
        did: list[str] = []
        state = self._state(ctx)
        if state == "foreign":
            listing = ctx.probe("ls", "-A", root).stdout.split()
            return Outcome.failed(
                f"{root} exists but holds no ComfyUI (it has {', '.join(listing[:8])}{' ...' if len(listing) > 8 else ''}); "
                "podcheck does not clone over files: move them aside or set [pod] comfyui_dir")
        if state == "missing":
            failure = self._clone(ctx)
            if failure:
                return Outcome.failed(failure)
            did.append(f"cloned {c.repo} ({c.ref}) into {root}")
        elif state == "checkout":
            problem = self._source_problem(ctx)
            if problem:
                failure = self._fast_forward(ctx, problem)
                if failure:
                    return Outcome.failed(failure)
                did.append(f"fast-forwarded {root} to {c.ref} ({problem})")
        # after a clone, always (its .gitignore leaves custom_nodes/ out, and a dry run cannot look)
        if state == "missing" or not ctx.probe("test", "-d", f"{root}/custom_nodes").ok:
            made = ctx.run("mkdir", "-p", f"{root}/custom_nodes")
            if not made.ok:
                return Outcome.failed(f"{root} has no custom_nodes/ folder (ComfyUI dies at start without it) and "
                                      f"it cannot be made: {_last(made)}")
            made_dir = f"made the missing folder {root}/custom_nodes (ComfyUI dies at start without it)"
        else:
            made_dir = ""
        requirements, commit = source(ctx)
        if requirements is None and not (did and ctx.dry_run):  # a dry run's clone is not there to read
            return Outcome.failed(f"{root}/requirements.txt is missing: cannot install ComfyUI's requirements")
        if did or self._requirements_due(ctx, requirements):
            installed = self._install_requirements(ctx)
            if isinstance(installed, Outcome):
                return installed
            if installed:
                did.append(f"installed {installed}")
        short = (commit or "no git")[:10]
        did += [made_dir] if made_dir else []
        if not did:
            return Outcome.unchanged(f"ComfyUI at {short} in {root}; its requirements are met")
        return Outcome.changed("; ".join(did) + f" (now at {short})")

    def _state(self, ctx: Context) -> str:
        """missing (no folder, or an empty one) | checkout (git) | plain (ComfyUI without git) | foreign."""
        root = ctx.cfg.pod.comfyui_dir
        ran = ctx.probe("sh", "-c", '[ -e "$1" ] || { echo missing; exit; }; [ -d "$1/.git" ] && { echo checkout; exit; }; '
                        '[ -f "$1/main.py" ] && { echo plain; exit; }; [ -z "$(ls -A "$1")" ] && echo missing || echo foreign',
                        "sh", root)
        return ran.stdout.strip() or "missing"

    def _source_problem(self, ctx: Context) -> str | None:
        """Why the checked-out source must move, or None: files missing, too old for sage, repo/ref changed."""
        root = ctx.cfg.pod.comfyui_dir
        cli_args = ctx.pod.read_text(f"{root}/comfy/cli_args.py")
        if not ctx.probe("test", "-f", f"{root}/main.py").ok or cli_args is None:
            return "main.py or comfy/cli_args.py missing"
        if ctx.cfg.attention.sage == "required" and "--use-sage-attention" not in cli_args:
            return "its comfy/cli_args.py has no --use-sage-attention"
        old = ctx.marker.inputs if ctx.marker is not None else {}
        for key in ("repo", "ref"):
            if key in old and old[key] != getattr(ctx.cfg.comfyui, key):
                return f"[comfyui] {key} changed from {old[key]} to {getattr(ctx.cfg.comfyui, key)}"
        if any(r.id == "comfyui.upstream" for r in ctx.failing(self.id)):
            return f"{ctx.cfg.comfyui.repo} {ctx.cfg.comfyui.ref} has a newer commit"
        return None

    def _clone(self, ctx: Context) -> str | None:
        root, c = ctx.cfg.pod.comfyui_dir, ctx.cfg.comfyui
        partial = f"{root}.podcheck-clone"
        if ctx.probe("test", "-e", partial).ok:  # a clone a crash interrupted: keep it, out of the way
            where, why = ctx.quarantine(partial)
            if where is None:
                return f"a partial clone is in the way at {partial} and cannot be moved: {why}"
        ran = ctx.run("git", "clone", "--quiet", c.repo, partial, timeout=ctx.install_timeout(),
                      env={"GIT_TERMINAL_PROMPT": "0"})
        if not ran.ok:
            return (f"git clone {c.repo} failed: {_last(ran)}; next: check the pod reaches it, or point "
                    "[comfyui] repo at a mirror or a local repository (a path or file:// URL) and run --fix again")
        ran = ctx.run("git", "-C", partial, "checkout", "--quiet", c.ref, timeout=120)
        if not ran.ok:
            return f"{c.repo} has no ref {c.ref}: {_last(ran)}"
        ctx.run("rmdir", root)  # an empty folder in the way (rmdir never removes anything else)
        ran = ctx.run("mv", "-T", partial, root)
        return None if ran.ok else f"cannot move the clone into {root}: {_last(ran)}"

    def _fast_forward(self, ctx: Context, problem: str) -> str | None:
        root, c = ctx.cfg.pod.comfyui_dir, ctx.cfg.comfyui
        dirty = git(ctx, "status", "--porcelain", "--untracked-files=no", timeout=60, reads=True)
        if not dirty.ok:
            return f"cannot read the state of the checkout {root}: {_last(dirty)}"
        changed = [line[3:] for line in dirty.stdout.splitlines() if line.strip()]
        if changed:
            return (f"the ComfyUI checkout {root} must be updated ({problem}), but it has local changes in "
                    f"{', '.join(changed[:10])}{' ...' if len(changed) > 10 else ''}: podcheck leaves it untouched; "
                    "commit or stash them, then run --fix again")
        fetched = git(ctx, "fetch", "--quiet", c.repo, c.ref)
        if not fetched.ok:
            return f"git fetch {c.repo} {c.ref} failed: {_last(fetched)}"
        on_branch = git(ctx, "symbolic-ref", "-q", "HEAD", timeout=30, reads=True).ok
        moved = git(ctx, "merge", "--ff-only", "--quiet", "FETCH_HEAD") if on_branch else \
            git(ctx, "checkout", "--quiet", "FETCH_HEAD")
        if not moved.ok:
            return (f"cannot fast-forward {root} to {c.repo} {c.ref} (its history diverged?): {_last(moved)}; "
                    "podcheck leaves it as it is")
        return None

    def _requirements_due(self, ctx: Context, requirements: str) -> bool:
        """pip runs unless the requirements check passed and requirements.txt is the one last installed."""
        failing = [r for r in ctx.failing(self.id) if r.id == "comfyui.installed"]
        judged = any(r.repair == self.id and r.status == "passed" for r in ctx.before.values())
        recorded = (ctx.marker.inputs if ctx.marker is not None else {}).get("requirements_sha256")
        return bool(failing) or not judged or recorded != requirements

    def _install_requirements(self, ctx: Context) -> str | Outcome:
        pinned = pin_torch_set(ctx)
        if isinstance(pinned, Outcome):
            return pinned
        pins = ctx.pod.read_text(pinned, timeout=30) or ""
        pins = ", ".join(pins.split())
        ran = ctx.run(*self._pip(ctx), timeout=ctx.install_timeout())
        if not ran.ok:
            return Outcome.failed(f"installing ComfyUI's requirements ({pins} pinned): {pip_failure(ran)}")
        installed = [ln.split("Successfully installed", 1)[1].strip() for ln in ran.stdout.splitlines()
                     if "Successfully installed" in ln]
        return f"requirements ({installed[0]})" if installed else ""


def constraints_path(ctx: Context) -> str:
    return f"{ctx.cfg.pod.state_dir}/comfyui-constraints.txt"


def pin_torch_set(ctx: Context) -> str | Outcome:
    """Write the installed torch set (torch, torchvision, torchaudio) as pip constraints; their path."""
    pins = [f"{dist}=={v}" for dist in PINNED if (v := installed_version(ctx, dist))]
    if not pins:
        return Outcome.failed(f"torch is not installed in {ctx.cfg.pod.python}: ComfyUI's requirements would "
                              "bring an arbitrary build")
    path = constraints_path(ctx)
    wrote = ctx.run("sh", "-c", 'mkdir -p "$(dirname "$1")" && printf "%s\\n" "$2" > "$1"', "sh", path,
                    "\n".join(pins))
    if not wrote.ok:
        return Outcome.failed(f"cannot write {path}: {_last(wrote)}")
    return path


def _last(ran) -> str:
    lines = (ran.stderr or ran.stdout).strip().splitlines()
    return lines[-1][:300] if lines else ran.why()



# --- launch and relaunch ---------------------------------------------------------------------------

# ComfyUI's launch banner comfyui_log.launch_banner() names its pid (sh's $$ stays the pid through every exec).
_BANNER = ["sh", "-c", 'echo "[podcheck] ComfyUI launch pid=$$"; exec "$@"', "sh"]


def user_of(proc: Any, workspace: str) -> str | None:
    """The user whose output folder a ComfyUI process writes to ({workspace}/output/<user>), if any."""
    value = proc.args.get("--output-directory")
    if not value:
        return None
    path, root = proc.path(value), f"{workspace.rstrip('/')}/output/"
    rest = path[len(root):] if path.startswith(root) else ""
    name = rest.split("/", 1)[0]
    return name if name and not invalid_reason(name) else None


def wanted_options(ctx: Context, user: str, given: dict[str, list[str]] | None = None) -> list[str]:
    return normalized(wanted(ctx, user, given))


def wanted(ctx: Context, user: str, given: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """ComfyUI's options for `user`: its own folders and database (where ComfyUI has --database-url), sage
    when required (and not still pending), --cpu on a pod without GPU, the rest as given (a relaunch keeps a process's other options) or from [comfyui] for a new launch."""
    c = ctx.cfg.comfyui
    if given is None:
        given = {"--listen": [c.listen], "--port": [str(c.port)], **comfyui.parse_args(c.extra_args).given}
    opts = {k: list(v) for k, v in given.items()}
    sage = ctx.cfg.attention.sage == "required" and "sage" not in ctx.pending
    if sage:
        for flag in comfyui.ATTENTION:
            opts.pop(flag, None)
        opts["--use-sage-attention"] = []
    if cpu_only(ctx.cfg):
        opts.setdefault("--cpu", [])
    if not comfyui.is_loopback(c.listen) and comfyui.is_loopback(comfyui.Args(opts).listen):
        opts["--listen"] = [c.listen]  # behind the pod's HTTP proxy (comfyui.listen)
    if comfyui.DATABASE_FLAG in comfyui.flag_names(ctx.pod.read_text(f"{ctx.cfg.pod.comfyui_dir}/comfy/cli_args.py")):
        opts.setdefault(comfyui.DATABASE_FLAG, [comfyui.database_url(ctx.cfg.pod.workspace, user)])
    mine = comfyui.user_options(ctx.cfg.pod.workspace, user)
    for flag, value in zip(mine[::2], mine[1::2]):
        opts[flag] = [value]
    return opts


def cpu_only(cfg: Any) -> bool:
    """ComfyUI must run with --cpu: the pod has no GPU ([pod] gpu = "absent") or a CPU torch
    ([torch] cuda = "cpu"); without it ComfyUI dies at start (`Torch not compiled with CUDA enabled`,
    `Found no NVIDIA driver`)."""
    return cfg.pod.gpu == "absent" or cfg.torch.cuda == "cpu"


def normalized(given: dict[str, list[str]]) -> list[str]:
    """Options as a command line; an APPEND option's values each with their own flag (every use kept)."""
    out: list[str] = []
    for flag, values in given.items():
        if flag in comfyui.APPEND and len(values) > 1:
            out += [part for value in values for part in (flag, value)]
        else:
            out += [flag, *values]
    return out


def kernel_env(ctx: Context, user: str) -> dict[str, str]:
    """Triton and TorchInductor caches on local disk, per user."""
    root = f"{ctx.cfg.fix.kernel_cache_dir.rstrip('/')}/{user}"
    return {"TRITON_CACHE_DIR": f"{root}/triton", "TORCHINDUCTOR_CACHE_DIR": f"{root}/inductor"}


def start(ctx: Context, user: str, options: list[str], cwd: str | None = None) -> tuple[int | None, str]:
    """Start ComfyUI for `user` with `options`; wait until it answers. (pid, "") or (pid or None, why not)."""
    cfg = ctx.cfg
    env = kernel_env(ctx, user)
    folders = [f"{cfg.pod.workspace}/{kind}/{user}" for kind in ("output", "input", "temp", "user")] + list(env.values())
    ctx.run("mkdir", "-p", *folders)
    log = cfg.comfyui.log
    argv = ["env", *(f"{k}={v}" for k, v in env.items()), cfg.pod.python, f"{cfg.pod.comfyui_dir}/main.py", *options]
    pid, ran = shell.start_detached(partial(ctx.run, tagged=False), [*_BANNER, *argv], log, cwd or cfg.pod.comfyui_dir,
                                    dry_run=ctx.dry_run)
    if pid is None:
        return None, f"cannot start ComfyUI: {ran.why()}"
    ctx.run("sh", "-c", 'printf "%s\\n" "$2" > "$1"', "sh", f"{cfg.pod.state_dir}/comfyui-{user}.pid",
            str(pid) if pid else "<pid>")
    return pid, "" if ctx.dry_run else wait_answer(ctx, pid, options)  # a dry run started nothing to wait for


def wait_answer(ctx: Context, pid: int, options: list[str]) -> str:
    """'' once ComfyUI `pid` answers GET /system_stats, else why not (it exited: its log's last lines)."""
    args = comfyui.parse_args(options)
    url = comfyui.url_for(args.port, "/system_stats", comfyui.connect_host(args.listen))
    deadline = time.monotonic() + float(ctx.cfg.fix.launch_timeout)
    while time.monotonic() < deadline:
        if comfyui.request(ctx.pod, url, timeout=2.0).ok:
            return ""
        if not procs.alive(ctx.pod, pid):  # a zombie counts as gone (this init reaps late)
            log = comfyui_log.read_log(ctx.pod, ctx.cfg.comfyui.log, max_bytes=65536)
            if log.text is None:
                return f"ComfyUI (pid {pid}) exited at start; its log {log.path} cannot be read ({log.error})"
            lines = comfyui_log.run_lines(log.text, pid, alone=False) or []
            said = " | ".join(comfyui_log.explanation(lines)) or "nothing"
            return f"ComfyUI (pid {pid}) exited at start; it said: {said[-900:]} (log {log.path})"
        time.sleep(0.2)
    return (f"ComfyUI (pid {pid}) did not answer {url} within {ctx.cfg.fix.launch_timeout:g} s "
            f"([fix] launch_timeout); it is left running (still loading?), log {ctx.cfg.comfyui.log}")


def stop(ctx: Context, pid: int, grace: float = 10.0) -> bool:
    """TERM ComfyUI `pid` (its process group when it leads one), KILL after `grace`; True when it is gone."""
    return shell.stop(ctx.pod, ctx.run, pid, grace, dry_run=ctx.dry_run)


def idle(ctx: Context, proc: Any) -> str | None:
    """None when ComfyUI `proc` has nothing queued or running, else why it may not be restarted now."""
    answer = comfyui.request(ctx.pod, proc.url("/queue"))
    if not answer.ok or not isinstance(answer.data, dict):
        return f"{proc} does not answer {proc.url('/queue')} ({answer.error or f'HTTP {answer.status}'}): cannot tell it is idle"
    running, pending = len(answer.data.get("queue_running") or []), len(answer.data.get("queue_pending") or [])
    if running or pending:
        return f"{proc} is busy ({running} running, {pending} queued)"
    return None


@register
class Launch(Repair):
    id = "comfyui.launch"
    order = 80
    starts_service = True
    description = "start ComfyUI for [pod] user, detached, with per-user folders, sage and local kernel caches"
    blast = "safe"
    may_precede = ("sage",)

    def needed(self, cfg: Any) -> tuple[str, ...]:
        return ("comfyui", "isolation.user_dirs") + (("sage",) if cfg.attention.sage == "required" else ())

    def _user(self, ctx: Context) -> str | Outcome:
        user = ctx.cfg.pod.user
        if not user:
            return Outcome.failed("no [pod] user (or $PODCHECK_USER): podcheck launches one ComfyUI per user, "
                                  "with that user's folders")
        why = invalid_reason(user)
        return Outcome.failed(f"[pod] user {user!r} {why}") if why else user

    def blocker(self, ctx: Context) -> str | None:
        user = self._user(ctx)
        return user.message if isinstance(user, Outcome) else None

    def apply(self, ctx: Context) -> Outcome:
        user = self._user(ctx)
        if isinstance(user, Outcome):
            return user
        port = int(ctx.cfg.comfyui.port)
        others: list[Any] = []
        for proc in comfyui.processes(ctx.pod):
            if user_of(proc, ctx.cfg.pod.workspace) != user:
                others.append(proc)
                continue
            why = wait_answer(ctx, proc.pid, proc.options) if _young(proc, ctx) else \
                ("" if comfyui.request(ctx.pod, proc.url("/system_stats")).ok else "hung")
            if not why:
                return Outcome.unchanged(f"ComfyUI for {user} runs ({proc}) and answers")
            if not stop(ctx, proc.pid):
                return Outcome.failed(f"ComfyUI {proc} does not answer and does not stop")
            ctx.log(f"stopped ComfyUI {proc}: it did not answer")
        taken = {proc.port for proc in others}
        free = next(p for p in range(port, port + 100) if p not in taken) if port in taken else port
        options = wanted_options(ctx, user)
        moved = ""
        if free != port:
            options = wanted_options(ctx, user, {**wanted(ctx, user), "--port": [str(free)]})
            holder = next(p for p in others if p.port == port)
            moved = (f" on port {free}: [comfyui] port {port} is taken by ComfyUI {holder}, which serves "
                     f"{user_of(holder, ctx.cfg.pod.workspace) or 'no user'}")
        pid, why = start(ctx, user, options)
        if why:
            return Outcome.failed(why)
        note = " (without --use-sage-attention until sage is installed in the background)" \
            if ctx.cfg.attention.sage == "required" and "sage" in ctx.pending else ""
        return Outcome.changed(f"started ComfyUI for {user} (pid {pid}, port {free}){moved}{note}; "
                               f"log {ctx.cfg.comfyui.log}")


def _young(proc: Any, ctx: Context) -> bool:
    return proc.started is not None and time.time() - proc.started < float(ctx.cfg.fix.launch_timeout)


@register
class Relaunch(Repair):
    id = "comfyui.relaunch"
    order = 90
    description = ("restart an idle ComfyUI launched with the wrong flags, or whose sage fell back, for the same "
                   "user (never a busy one); start one for [pod] user when only other users' run")
    blast = "restarts-service"

    def needed(self, cfg: Any) -> tuple[str, ...]:
        return ("comfyui.launch",) + (("sage",) if cfg.attention.sage == "required" else ())

    def _wrong(self, ctx: Context) -> list[tuple[Any, str, list[str]]]:
        """(process, user, the options it should have) for each ComfyUI whose options are not those, and
        each sage one whose log showed fallbacks (attention.sage_active: a restart starts a run to judge)."""
        failing = {r.id for r in ctx.failing(self.id)}
        sage_fell_back = "attention.sage_active" in failing
        out = []
        for proc in comfyui.processes(ctx.pod):
            user = user_of(proc, ctx.cfg.pod.workspace) or ctx.cfg.pod.user
            if not user or invalid_reason(user):
                continue
            should = wanted(ctx, user, proc.args.given)
            if should != proc.args.given or (sage_fell_back and proc.args.use_sage_attention) or \
                    "comfyui.custom_nodes" in failing:
                out.append((proc, user, normalized(should)))
        return out

    def _node_requirements(self, ctx: Context) -> tuple[list[str], str | None]:
        """Install the requirements.txt of each custom node that failed to import since launch, the torch
        set pinned (never moving torch): (what was installed, why it failed or None)."""
        if not any(r.id == "comfyui.custom_nodes" for r in ctx.failing(self.id)):
            return [], None
        log = comfyui_log.read_log(ctx.pod, ctx.cfg.comfyui.log)
        lines = (log.text or "").splitlines()
        procs = comfyui.processes(ctx.pod)
        _, at = comfyui_log.since_launch(lines, procs, alone=len(procs) == 1)
        done: list[str] = []
        for failure in comfyui_log.node_failures(lines[at:]):
            requirements = posixpath.join(failure.path, "requirements.txt")
            if not ctx.probe("test", "-f", requirements).ok:
                ctx.log(f"custom node {failure.name} has no requirements.txt: nothing to install for it")
                continue
            pinned = pin_torch_set(ctx)
            if isinstance(pinned, Outcome):
                return done, pinned.message
            ran = ctx.run(*pip_install(ctx, "-r", requirements, "-c", pinned), timeout=ctx.install_timeout())
            if not ran.ok:
                return done, f"installing {requirements} (torch set pinned): {pip_failure(ran)}"
            done.append(f"{failure.name}'s requirements")
        return done, None

    def apply(self, ctx: Context) -> Outcome:
        wrong = self._wrong(ctx)
        user = ctx.cfg.pod.user
        procs = comfyui.processes(ctx.pod)
        if user and not invalid_reason(user) and not any(user_of(p, ctx.cfg.pod.workspace) == user for p in procs):
            # another user's ComfyUI answers (so comfyui.running passed), but none serves this pod's user
            started = Launch().apply(ctx)
            if started.status != "changed" or not wrong:
                return started
            ctx.log(started.message)
        if not wrong:
            return Outcome.unchanged("every ComfyUI runs with the flags it should")
        installed, why = self._node_requirements(ctx)
        if why:
            return Outcome.failed(why)
        done, waiting = ([f"installed {', '.join(installed)}"] if installed else []), []
        for proc, user, options in wrong:
            busy = idle(ctx, proc)
            if busy:
                waiting.append(f"{busy}: not restarted (a running generation is never killed); run --fix again when it is idle")
                continue
            if not stop(ctx, proc.pid):
                return Outcome.failed(f"ComfyUI {proc} does not stop")
            pid, why = start(ctx, user, options, cwd=proc.cwd)
            if why:
                return Outcome.failed(f"stopped ComfyUI {proc} to fix its flags, but the new one failed: {why}")
            added = sorted(set(options) - set(normalized(proc.args.given)))
            done.append(f"restarted ComfyUI for {user}: pid {proc.pid} -> {pid} "
                        f"({' '.join(a for a in added if a.startswith('--')) or 'same options'})")
        if not done:
            return Outcome.skipped("; ".join(waiting))
        return Outcome.changed("; ".join(done + waiting))
