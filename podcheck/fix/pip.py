"""pip in the pod's own interpreter (`[pod] python -m pip`), with `[fix] pip_args`, under
`[fix] install_timeout`: what the torch, sage and comfyui repairs share."""
from __future__ import annotations

import posixpath
from typing import Any

from podcheck.fix.repair import Context, Outcome, Repair
from podcheck.host.pod import Ran

_VERSION = "import importlib.metadata as m, sys\ntry: print(m.version(sys.argv[1]))\nexcept m.PackageNotFoundError: pass"


def venv_dir(python: str) -> str | None:
    """The venv a pod python lives in ('/ws/venv/bin/python' -> '/ws/venv'), or None when it is not one."""
    parent = posixpath.dirname(python)
    return posixpath.dirname(parent) if posixpath.basename(parent) == "bin" else None


def installed_version(ctx: Context, dist: str) -> str | None:
    """The installed version of a distribution in the pod python (no import, no pip)."""
    ran = ctx.probe(ctx.cfg.pod.python, "-c", _VERSION, dist, timeout=30)
    return ran.stdout.strip() or None if ran.ok else None


def satisfies(spec: str, dist: str, version: str | None) -> bool:
    """Whether `version` of `dist` meets a requirement spec ('torch==2.13.0'); False when unknown."""
    if version is None:
        return False
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    try:
        req = Requirement(spec)
    except InvalidRequirement:
        return False  # a URL or a wheel path: only pip can tell
    if canonicalize_name(req.name) != canonicalize_name(dist) or req.url:
        return False
    return req.specifier.contains(version, prereleases=True)


def pip_install(ctx: Context, *args: str, index_url: str = "", extra_index_url: str = "") -> list[str]:
    """The pip command line for the pod python."""
    argv = [ctx.cfg.pod.python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *args]
    if index_url:
        argv += ["--index-url", index_url]
    if extra_index_url:
        argv += ["--extra-index-url", extra_index_url]
    return argv + list(ctx.cfg.fix.pip_args)


def pip_failure(ran: Ran) -> str:
    lines = [ln for ln in (ran.stderr or ran.stdout).strip().splitlines() if "is ignored" not in ln]
    errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-1:]
    return f"pip {'timed out' if ran.timed_out else f'exited {ran.rc}'}: {' '.join(errors)[-400:] or 'no output'}"


class PipRepair(Repair):
    """Distributions installed from configured specs in one pip command; reinstalled when their checks fail."""

    dist: str

    def spec(self, ctx: Context) -> str:
        raise NotImplementedError

    def specs(self, ctx: Context) -> list[str]:
        """Every spec installed together (the first is `spec`)."""
        return [self.spec(ctx)]

    def index(self, ctx: Context) -> str:
        return ""

    def inputs(self, ctx: Context) -> dict[str, Any]:
        return {"spec": self.spec(ctx), "index_url": self.index(ctx)}

    def _argvs(self, ctx: Context, installed: str | None) -> list[list[str]]:
        specs, index = self.specs(ctx), self.index(ctx)
        if installed and ctx.failing(self.id):  # installed but broken (a torn install, the wrong build)
            return [pip_install(ctx, "--force-reinstall", "--no-deps", "--no-cache-dir", *specs, index_url=index),
                    pip_install(ctx, *specs, index_url=index)]
        return [pip_install(ctx, *specs, index_url=index)]

    def _met(self, ctx: Context, installed: str | None) -> bool:
        return satisfies(self.spec(ctx), self.dist, installed) and all(
            satisfies(spec, requirement_name(spec), installed_version(ctx, requirement_name(spec)))
            for spec in self.specs(ctx)[1:])

    def apply(self, ctx: Context) -> Outcome:
        spec = " ".join(self.specs(ctx))
        installed = installed_version(ctx, self.dist)
        if installed and not ctx.failing(self.id) and self._met(ctx, installed):
            return Outcome.unchanged(f"{self.dist} {installed} is installed and satisfies {spec}")
        argvs = self._argvs(ctx, installed)
        for argv in argvs:
            ran = ctx.run(*argv, timeout=ctx.install_timeout())
            if not ran.ok:
                return Outcome.failed(f"installing {spec}: {pip_failure(ran)}")
        if ctx.dry_run:
            return Outcome.changed(f"would install {spec} ({self.dist} {installed or 'missing'} now)")
        now = installed_version(ctx, self.dist)
        if now is None:
            return Outcome.failed(f"pip installed {spec}, but {self.dist} is still not installed in {ctx.cfg.pod.python}")
        broken = self.verify(ctx)
        if broken:
            return Outcome.failed(broken)
        if installed == now and len(argvs) == 1:
            return Outcome.unchanged(f"{self.dist} {now} was already installed")
        return Outcome.changed(f"{self.dist} {installed or 'missing'} -> {now}"
                               + (" (reinstalled)" if installed == now else ""))

    def verify(self, ctx: Context) -> str | None:
        return None


def requirement_name(spec: str) -> str:
    """The distribution a spec names ('torchvision==0.28.0' -> 'torchvision'), or the spec itself."""
    from packaging.requirements import InvalidRequirement, Requirement
    try:
        return Requirement(spec).name
    except InvalidRequirement:
        return spec
