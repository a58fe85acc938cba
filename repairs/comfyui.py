"""The comfyui repair: install or update ComfyUI and its requirements. It clones `[comfyui] repo` at
`ref` into comfyui_dir, or fast-forwards a clean checkout when the installed source is too old, the
configured repo/ref changed, or `ref` is a branch with a newer upstream commit (comfyui.upstream); a
checkout with local changes or commits is never touched. Then it installs requirements.txt into the pod
python with the installed torch set (torch, torchvision, torchaudio) pinned in a constraints file, so
the requirements never move torch. Git and pip run only when due: the fingerprint is read from files
(requirements.txt, .git/HEAD), not from git. Launching and relaunching ComfyUI is repairs/comfyui_launch.py.
"""
from __future__ import annotations

from typing import Any

from podcheck.domain import comfyui
from podcheck.fix.pip import installed_version, pip_failure, pip_install
from podcheck.fix.repair import Context, Outcome, Repair, register

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
