"""The real third-party parts in tests: ComfyUI 0.3.64, ComfyUI-Manager, and what ComfyUI needs to run.

Built once per machine under podsim.CACHE (file-locked, renamed into place):

    tree = realparts.comfyui_tree()        # the unpacked ComfyUI 0.3.64 tree (read-only: copy it first)
    repo = realparts.upstream(tmp)         # a git repo of that tree, standing in for its GitHub upstream
    wh = realparts.wheelhouse()            # wheels: CUDA torch 2.13.0 set, requirements.txt, requests, sage
    py = realparts.comfy_python()          # a ready venv with all of it (~5.5 GB), for a running ComfyUI
    comfy = realparts.checkout(dest)       # a writable ComfyUI tree (+ ComfyUI-Manager) for one test

The tarballs come from the project's shared/realparts (SHA256SUMS checked). The wheelhouse is the
only step that uses the network: pip's machine config prefers the local `+cpu` torch wheel, so it is
built with that config switched off (PIP_CONFIG_FILE=/dev/null, PIP_FIND_LINKS unset), which is how
the registry's CUDA 13.0 torch (`2.13.0`, no local label) comes in. Every later install is
`--no-index --find-links WHEELHOUSE` (`pip_env()` keeps the machine's find-links out of it too).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import podsim

COMFYUI_VERSION = "0.3.64"
COMFYUI_TARBALL = "ComfyUI-0.3.64.tar.gz"
MANAGER_TARBALL = "ComfyUI-Manager-908a1009.tar.gz"
#: The CUDA torch set ComfyUI 0.3.64 runs on here (torchaudio: the registry has no 2.13 build; 2.11.1
#: imports with torch 2.13 and ComfyUI starts with no import failure).
TORCH_SET = ("torch==2.13.0", "torchvision==0.28.0", "torchaudio==2.11.1")
#: What ComfyUI 0.3.64 needs beyond requirements.txt: `requests` (imported, not listed), sage for
#: `--use-sage-attention` (triton comes with the CUDA torch).
EXTRA = ("requests", "sageattention==1.0.6")
#: What ComfyUI-Manager's prestartup would otherwise pip-install from the network at every first start
#: into the pod venv: its requirements.txt, and `numpy<2`, which it forces (cm_global.pip_overrides).
MANAGER_EXTRA = ("numpy<2",)
#: The index the registry's CUDA 13.0 torch stands for on a real pod.
CU130_INDEX = "https://download.pytorch.org/whl/cu130"


def source() -> Path:
    """The folder holding the real parts' tarballs and SHA256SUMS."""
    candidates = [os.environ.get("PODCHECK_REALPARTS", ""), str(podsim.REPO / "shared" / "realparts"),
                  str(podsim.REPO.parent / "shared" / "realparts"), str(podsim.REPO.parent.parent / "shared" / "realparts")]
    for folder in filter(None, candidates):
        if (Path(folder) / "SHA256SUMS").is_file():
            return Path(folder)
    raise RuntimeError(f"no real parts: none of {', '.join(filter(None, candidates))} has SHA256SUMS "
                       "(set PODCHECK_REALPARTS)")


def _verified(name: str) -> Path:
    folder = source()
    sums = dict(reversed(line.split(None, 1)) for line in (folder / "SHA256SUMS").read_text().splitlines() if line.strip())
    path = folder / name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if sums.get(name, "").strip() != digest:
        raise RuntimeError(f"{path}: sha256 {digest} is not the one SHA256SUMS lists")
    return path


def _unpack(name: str, into: Path) -> None:
    with tarfile.open(_verified(name)) as tar:
        tar.extractall(into, filter="data")


def comfyui_tree() -> Path:
    """The ComfyUI 0.3.64 tree, unpacked once (never run it in place: ComfyUI writes into its folder)."""
    return podsim.cached("realparts-comfyui-0.3.64", lambda tmp: _unpack(COMFYUI_TARBALL, tmp)) / "ComfyUI-0.3.64"


def manager_tree() -> Path:
    """ComfyUI-Manager as its authors ship it (the `ComfyUI-Manager` custom node folder)."""
    top = podsim.cached("realparts-comfyui-manager-908a1009", lambda tmp: _unpack(MANAGER_TARBALL, tmp))
    found = next((p for p in sorted(top.iterdir()) if (p / "__init__.py").is_file()), None)
    if found is None:
        raise RuntimeError(f"{MANAGER_TARBALL} holds no ComfyUI-Manager/__init__.py")
    return found


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


def _git_repo(tmp: Path) -> None:
    repo = tmp / "ComfyUI.git"
    shutil.copytree(comfyui_tree(), tmp / "work")
    subprocess.run(["git", "init", "-q", "-b", "master", str(tmp / "work")], check=True)
    git(tmp / "work", "add", "-A", "-f")  # upstream tracks files its .gitignore names (custom_nodes/, models/...)
    git(tmp / "work", "commit", "-q", "-m", f"ComfyUI {COMFYUI_VERSION} (Comfy-Org/ComfyUI a125cd84)")
    subprocess.run(["git", "clone", "-q", "--bare", str(tmp / "work"), str(repo)], check=True)
    shutil.rmtree(tmp / "work")


def upstream(root: Path) -> Path:
    """A bare git repo of ComfyUI 0.3.64 (branch master) at root/ComfyUI.git: the pod's `[comfyui] repo`.
    A local clone of a cached one (hard links), so a test may add commits to it."""
    cached = podsim.cached("realparts-comfyui-git-0.3.64-2", _git_repo) / "ComfyUI.git"
    dest = root / "ComfyUI.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(cached), str(dest)], check=True)
    return dest


def advance(repo: Path, root: Path, message: str = "upstream moves on") -> str:
    """Add one commit to branch master of the bare `repo` (a new file); its sha."""
    work = root / "upstream-work"
    if not work.exists():
        subprocess.run(["git", "clone", "-q", str(repo), str(work)], check=True)
    (work / "UPSTREAM_NEWS.md").write_text(f"{message} {time.time()}\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message)
    git(work, "push", "-q", "origin", "HEAD:master")
    return git(work, "rev-parse", "HEAD").strip()


def checkout(dest: Path, *, manager: bool = True) -> Path:
    """A writable ComfyUI 0.3.64 tree at `dest`, with ComfyUI-Manager in custom_nodes/ when `manager`."""
    shutil.copytree(comfyui_tree(), dest, symlinks=True)
    if manager:
        shutil.copytree(manager_tree(), dest / "custom_nodes" / "ComfyUI-Manager", symlinks=True)
    return dest


# --- wheels and venvs ----------------------------------------------------------------------------

def registry_env() -> dict[str, str]:
    """pip's environment with the machine's find-links and config switched off (the registry's torch)."""
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def pip_env() -> dict[str, str]:
    """The environment for installs from the wheelhouse alone: no machine find-links (its `+cpu` torch
    would win over the CUDA one), no machine config."""
    return {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": str(wheelhouse())}


def pip_args() -> list[str]:
    """`[fix] pip_args` for pods that install from the wheelhouse only."""
    return ["--no-index", "--find-links", str(wheelhouse()), "--no-compile"]


def _build_wheelhouse(tmp: Path) -> None:
    requirements = comfyui_tree() / "requirements.txt"
    began = time.monotonic()
    for wanted in ([*TORCH_SET, "-r", str(requirements), *EXTRA],
                   ["-r", str(manager_tree() / "requirements.txt"), *MANAGER_EXTRA]):
        done = subprocess.run([podsim.sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                               "-w", str(tmp), *wanted], capture_output=True, text=True, env=registry_env(), timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"pip wheel failed:\n{done.stderr[-3000:]}")
    if list(tmp.glob("torch-*+cpu*")):
        raise RuntimeError("the wheelhouse got the local +cpu torch: pip's machine find-links were not switched off")
    (tmp / "BUILT").write_text(f"pip wheel took {time.monotonic() - began:.0f} s\n")


def wheelhouse() -> Path:
    """Every wheel ComfyUI 0.3.64 needs with the CUDA torch set (~3.5 GB, once from the registry)."""
    return podsim.cached("wheelhouse-comfyui-0.3.64", _build_wheelhouse)


def install(python: Path | str, *args: str, timeout: float = 3600) -> float:
    """pip install from the wheelhouse alone into `python`'s venv; the seconds it took."""
    began = time.monotonic()
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pip_args(), *args],
                          capture_output=True, text=True, env={**os.environ, **pip_env()}, timeout=timeout)
    if done.returncode != 0:
        err = "\n".join(ln for ln in done.stderr.splitlines() if "is ignored" not in ln)
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{err[-3000:]}")
    return time.monotonic() - began


def _build_comfy_venv(tmp: Path) -> None:
    subprocess.run([podsim.BASE_PYTHON, "-m", "venv", str(tmp)], check=True)
    seconds = install(tmp / "bin" / "python", *TORCH_SET, "-r", str(comfyui_tree() / "requirements.txt"), *EXTRA,
                      "-r", str(manager_tree() / "requirements.txt"), *MANAGER_EXTRA)
    (tmp / "BUILT").write_text(f"pip install took {seconds:.0f} s\n")


def comfy_python() -> Path:
    """A venv (CUDA torch 2.13.0+cu130 set, ComfyUI 0.3.64's requirements, requests, sage 1.0.6 + triton,
    ComfyUI-Manager's requirements and its numpy<2) that runs the real ComfyUI with --cpu here. ~5.5 GB,
    shared: never let a ComfyUI install into it (Manager finds its needs met, so it installs nothing);
    tests that install give the pod its own `layered_python`. Use it through `python -m` (a renamed
    venv's scripts have stale shebangs)."""
    return podsim.cached("comfyui-venv-0.3.64-cu130-2", _build_comfy_venv) / "bin" / "python"


def layered_python(dest: Path) -> Path:
    """A pod venv at `dest` that sees the cached ComfyUI venv (a .pth file) and can take installs of its own
    (they land in `dest`, in front of the shared ones)."""
    subprocess.run([podsim.BASE_PYTHON, "-m", "venv", str(dest)], check=True)
    shared = podsim.site_packages(comfy_python().parent.parent)
    (podsim.site_packages(dest) / "podcheck-comfyui.pth").write_text(f"{shared}\n")
    return dest / "bin" / "python"


# --- pods ----------------------------------------------------------------------------------------

def cpu_torch_wheels() -> Path | None:
    """The folder with the machine's local CPU torch wheel (`torch-2.13.0+cpu`), if this machine has one."""
    for folder in filter(None, [*(os.environ.get("PIP_FIND_LINKS") or "").split(), "/opt/wheels"]):
        if list(Path(folder).glob("torch-2.13.0+cpu-*.whl")):
            return Path(folder)
    return None


def bare_pod(root: Path, *, cuda: str = "13.0", sage: str = "required", user: str = "alice") -> podsim.SimPod:
    """A bare pod (empty workspace, no venv) whose `[comfyui] repo` is a local git repo of the real
    ComfyUI 0.3.64 and whose installs come from the wheelhouse only. `cuda="13.0"`: the registry's CUDA
    torch set, run on CPU (`[pod] gpu = "absent"`, so ComfyUI gets --cpu); `cuda="cpu"`: the machine's
    CPU torch with the only torchvision there is (a CUDA build), which cannot work."""
    import fixsim

    pod = fixsim.bare_pod(root, sage=sage, user=user)
    repo = upstream(root)
    args = pip_args()
    spec = TORCH_SET[0]
    if cuda == "cpu":
        local = cpu_torch_wheels()
        if local is None:
            raise RuntimeError("no local torch-2.13.0+cpu wheel on this machine (PIP_FIND_LINKS, /opt/wheels)")
        args = [*args, "--find-links", str(local)]
        spec = "torch==2.13.0+cpu"
    pod.configure(
        pod={"probe_timeout": 600.0},
        torch={"cuda": cuda, "spec": spec, "vision_spec": TORCH_SET[1], "audio_spec": TORCH_SET[2],
               "index_url": "auto"},  # PyTorch's index for [torch] cuda; --no-index keeps pip off it here
        attention={"sage": sage, "sage_spec": "sageattention==1.0.6"},
        comfyui={"repo": str(repo), "ref": "master", "extra_args": [], "http_timeout": 10.0},
        fix={"pip_args": args, "launch_timeout": 600.0},
    )
    pod.env.update(pip_env())
    return pod


def healthy_pod(root: Path, *, user: str = "alice") -> podsim.SimPod:
    """A pod that passes every check once one `podcheck --fix` has launched ComfyUI and the sync loop:
    the real ComfyUI 0.3.64 (+ Manager) checkout, a pod venv layered on the cached CUDA-torch venv
    (nothing to install), sage required and importable, the user's folders, and a sync remote (an
    rclone alias on local disk). For the benchmarks, which need a pod that is really healthy."""
    import fixsim

    pod = fixsim.bare_pod(root, sage="required", user=user)
    ws = pod.workspace
    python = layered_python(ws / "venv")
    checkout(ws / "ComfyUI")
    pod.configure(
        pod={"python": str(python), "probe_timeout": 600.0},
        torch={"cuda": "13.0", "spec": TORCH_SET[0], "vision_spec": TORCH_SET[1], "audio_spec": TORCH_SET[2],
               "index_url": ""},
        attention={"sage_spec": EXTRA[1]},
        comfyui={"repo": str(upstream(root)), "listen": "0.0.0.0", "http_timeout": 10.0, "extra_args": []},
        fix={"pip_args": pip_args() + ["--find-links", str(wheelhouse())], "launch_timeout": 600.0},
    )
    pod.env.update(pip_env())
    return pod
