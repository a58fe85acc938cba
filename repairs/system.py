"""Repairs of the system area: ffmpeg from the system package manager."""
from __future__ import annotations

from podcheck.fix.repair import Context, Outcome, Repair, register
from podcheck.host.pod import quote

APT_NO_CANDIDATE = ("Unable to locate package", "has no installation candidate")


@register
class Ffmpeg(Repair):
    id = "ffmpeg"
    description = "install ffmpeg with the system package manager ([fix] ffmpeg_install)"
    blast = "safe"

    def inputs(self, ctx: Context):
        return {"install": list(ctx.cfg.fix.ffmpeg_install)}

    def commands(self, ctx: Context) -> list[list[str]]:
        return [list(ctx.cfg.fix.ffmpeg_install)]

    def apply(self, ctx: Context) -> Outcome:
        install = list(ctx.cfg.fix.ffmpeg_install)
        if not install:
            return Outcome.failed("[fix] ffmpeg_install is empty: nothing to install ffmpeg with")
        before = ctx.probe("ffmpeg", "-version")
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        ran = ctx.run(*install, timeout=ctx.install_timeout(), env=env)
        if not ran.ok and install[0].endswith("apt-get") and any(t in ran.stdout + ran.stderr for t in APT_NO_CANDIDATE):
            ctx.run("apt-get", "update", "-q", timeout=ctx.install_timeout(), env=env)  # a fresh pod has no lists
            ran = ctx.run(*install, timeout=ctx.install_timeout(), env=env)
        if not ran.ok:
            return Outcome.failed(f"`{quote(install)}` failed: {ran.why()}")
        after = ctx.probe("ffmpeg", "-version")
        if not after.ok:
            return Outcome.failed(f"`{quote(install)}` succeeded, but ffmpeg still does not run: {after.why()}")
        version = _version(after.stdout)
        if before.ok:
            return Outcome.unchanged(f"{version} was already installed; `{quote(install)}` changed nothing")
        return Outcome.changed(f"installed {version}")


def _version(text: str) -> str:
    first = text.splitlines()[0] if text else "ffmpeg"
    return first.split(" Copyright")[0].replace("ffmpeg version ", "ffmpeg ")
