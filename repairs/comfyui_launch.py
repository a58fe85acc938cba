"""Repairs of the comfyui area that start ComfyUI: `comfyui.launch` starts one for [pod] user, and
`comfyui.relaunch` restarts an idle one whose flags are wrong, whose sage fell back or whose custom nodes
failed to import (after installing their requirements, the torch set pinned), never a busy one. Each
ComfyUI gets its user's folders and database, sage when required, --cpu without a GPU and Triton /
Inductor caches on local disk; it is started detached behind a launch banner (comfyui_log) and waited
for until /system_stats answers. Installing or updating ComfyUI itself is repairs/comfyui.py.
"""
from __future__ import annotations

import posixpath
import time
from functools import partial
from typing import Any

from podcheck.domain import comfyui, comfyui_log
from podcheck.domain.users import invalid_reason
from podcheck.fix.pip import pip_failure, pip_install
from podcheck.fix.repair import Context, Outcome, Repair, register
from podcheck.host import procs, shell
from podcheck.repairs.comfyui import pin_torch_set

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
