"""The facts probe: run by the POD's python (never imported by podcheck), stdlib only.

It prints one line per finished section, `@@podcheck@@ {"section": ..., "data": ...}`, flushed at
once, and `@@podcheck@@ {"stage": ...}` before each risky step. If the interpreter hangs or dies
(a torch import on a broken driver, a sage kernel that segfaults), the sections already printed
survive and the last stage names where it stopped.

Argument: one JSON object: {"requirements": path or null, "gpu": bool, "sage": bool, "torchset": bool,
"reuse": fingerprint or absent}. The `install` section is the fingerprint of what the install-only
sections (torchset, requirements: seconds of imports) depend on; when it equals `reuse`, podcheck
still holds them from an earlier run on this pod and they are not run again.
"""
import json
import os
import platform
import re
import sys
import time

MARK = "@@podcheck@@ "


def emit(**obj):
    sys.stdout.write(MARK + json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def err(exc):
    text = "%s: %s" % (type(exc).__name__, exc)
    return text.strip()[:2000]


def dist_version(name):
    try:
        from importlib import metadata
    except ImportError:  # python < 3.8
        return None
    try:
        return metadata.version(name)
    except Exception:
        return None


#: Distributions whose versions a bug report needs; read from metadata, nothing is imported.
PACKAGES = ("torch", "torchvision", "triton", "sageattention", "xformers", "flash-attn", "numpy")


def python_facts():
    return {
        "version": platform.python_version(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "in_venv": sys.prefix != getattr(sys, "base_prefix", sys.prefix),
        "packages": dict((name, dist_version(name)) for name in PACKAGES),
    }


def torch_facts(gpu_tests):
    emit(stage="import torch")
    started = time.time()
    try:
        import torch
    except BaseException as exc:  # ImportError, OSError from a broken libcuda, ...
        return {"error": err(exc), "missing": isinstance(exc, ImportError) and getattr(exc, "name", "") == "torch"}
    out = {
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "import_seconds": round(time.time() - started, 3),
        "file": getattr(torch, "__file__", None),
    }
    emit(stage="torch.cuda")
    try:
        out["cuda_available"] = bool(torch.cuda.is_available())
        out["arch_list"] = list(torch.cuda.get_arch_list()) if out["cuda_available"] or torch.version.cuda else []
        out["device_count"] = int(torch.cuda.device_count()) if out["cuda_available"] else 0
    except BaseException as exc:
        out["cuda_error"] = err(exc)
        out.setdefault("cuda_available", False)
        out.setdefault("device_count", 0)
        out.setdefault("arch_list", [])
    devices = []
    for i in range(out["device_count"]):
        dev = {"index": i}
        try:
            dev["name"] = torch.cuda.get_device_name(i)
            major, minor = torch.cuda.get_device_capability(i)
            dev["capability"] = [int(major), int(minor)]
        except BaseException as exc:
            dev["error"] = err(exc)
        if gpu_tests:
            emit(stage="matmul on cuda:%d" % i)
            try:
                a = torch.ones((64, 64), device="cuda:%d" % i)
                value = float((a @ a).sum().item())
                dev["matmul"] = "ok" if value == 64.0 * 64 * 64 else "wrong result %r" % value
            except BaseException as exc:
                dev["matmul"] = err(exc)
        devices.append(dev)
    out["devices"] = devices
    return out


def sage_facts(gpu_tests, torch_ok):
    emit(stage="import sageattention")
    out = {"version": dist_version("sageattention")}
    try:
        import sageattention
    except BaseException as exc:
        out["error"] = err(exc)
        out["missing_module"] = getattr(exc, "name", None)
        return out
    out["file"] = getattr(sageattention, "__file__", None)
    folder = os.path.dirname(out["file"] or "")
    modules, broken = [], {}
    for entry in sorted(os.listdir(folder)) if folder else []:
        if entry.endswith((".so", ".pyd")):
            name = entry.split(".")[0]
            modules.append(name)
            try:
                __import__("sageattention." + name)
            except BaseException as exc:
                broken[name] = err(exc)
    out["compiled_modules"] = modules
    out["broken_modules"] = broken
    if gpu_tests and torch_ok:
        import torch
        calls = []
        for i in range(torch.cuda.device_count()):
            emit(stage="sageattn on cuda:%d" % i)
            try:
                q = torch.randn((1, 2, 64, 64), dtype=torch.float16, device="cuda:%d" % i)
                o = sageattention.sageattn(q, q, q, tensor_layout="HND", is_causal=False)
                torch.cuda.synchronize(i)
                calls.append({"index": i, "result": "ok" if bool(torch.isfinite(o).all()) else "non-finite output"})
            except BaseException as exc:
                calls.append({"index": i, "result": err(exc)})
        out["calls"] = calls
    return out


#: What ComfyUI imports at start beyond its requirements.txt, and the file of ComfyUI that imports it
#: (0.3.64's app/frontend_management.py imports requests without listing it); judged when that file does.
START_IMPORTS = (("requests", "app/frontend_management.py"),)


def start_imports(comfyui_dir):
    """The modules of START_IMPORTS this ComfyUI's own files import."""
    out = []
    for module, rel in START_IMPORTS:
        try:
            with open(os.path.join(comfyui_dir, rel)) as fh:
                text = fh.read()
        except OSError:
            continue
        if re.search(r"^\s*(import %s\b|from %s\b)" % (module, module), text, re.M):
            out.append(module)
    return out
#: Signs in what an import printed that numpy is not the one compiled extensions were built for.
NUMPY_ABI = ("compiled using NumPy 1.x cannot be run in", "_ARRAY_API not found", "Failed to initialize NumPy",
             "numpy.core.multiarray failed to import", "numpy.dtype size changed")


def quiet_import(name):
    """Import `name`, catching what it prints on stderr and warns: (error or None, text printed)."""
    import io
    import warnings
    caught, saved = io.StringIO(), sys.stderr
    sys.stderr = caught
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            try:
                __import__(name)
                error = None
            except BaseException as exc:
                error = err(exc)
    finally:
        sys.stderr = saved
    said = caught.getvalue() + "".join("%s\n" % w.message for w in seen)
    return error, said[-4000:]


def torch_requirements(dist):
    """The torch pins in a distribution's metadata ('torch==2.13.0'), without extras' ones."""
    try:
        from importlib import metadata
        reqs = metadata.requires(dist) or []
    except Exception:
        return []
    return [r.split(";")[0].strip() for r in reqs if re.match(r"^torch\b(?![-_\w])", r) and "extra ==" not in r]


def built_cuda(name):
    """The CUDA version a torch companion was built for, from the local label of the __version__ in its
    version.py ('0.28.0+cu130' -> '13.0', '+cpu' -> None), read without importing it; False: unknown."""
    try:
        import importlib.util
        spec = importlib.util.find_spec(name)
        folder = list(spec.submodule_search_locations or [])[0]
        with open(os.path.join(folder, "version.py")) as fh:
            text = fh.read()
    except Exception:
        return False
    m = re.search(r"^__version__\s*=\s*['\"][^'\"+]*\+(cu(\d+)(\d)|cpu|rocm[\d.]+)['\"]", text, re.M)
    if not m:
        return False
    if m.group(1) == "cpu":
        return None
    return "%s.%s" % (m.group(2), m.group(3)) if m.group(2) else m.group(1)


def torchset_facts():
    """torchvision and torchaudio next to torch: versions, torch pins, CUDA builds, import errors; numpy."""
    out = {"numpy": {"version": dist_version("numpy")}}
    for name in ("torchvision", "torchaudio"):
        d = {"version": dist_version(name)}
        out[name] = d
        if d["version"] is None:
            continue
        d["requires"] = torch_requirements(name)
        built = built_cuda(name)
        if built is not False:
            d["built_cuda"] = built
        emit(stage="import %s" % name)
        d["error"], said = quiet_import(name)
        abi = [s for s in NUMPY_ABI if s in said]
        if abi:
            d["numpy_abi"] = said.strip().splitlines()[-1][:300] if said.strip() else abi[0]
    return out


def import_names(dists):
    """dist name -> the module to import for it (its top-level package), for installed dists."""
    try:
        from importlib import metadata
        by_module = metadata.packages_distributions()
    except Exception:
        return {}
    norm = lambda n: re.sub(r"[-_.]+", "_", n).lower()  # noqa: E731
    owned = {}
    for module, names in by_module.items():
        if module.startswith("_") or not module.isidentifier():
            continue
        for dist in names:
            owned.setdefault(norm(dist), []).append(module)
    out = {}
    for dist in dists:
        modules = sorted(owned.get(norm(dist), []))
        if modules:
            out[dist] = next((m for m in modules if norm(m) == norm(dist)), modules[0])
    return out


def requirement_facts(path):
    """Judge requirements.txt against the installed distributions of this interpreter."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        return {"error": err(exc)}
    Requirement = None
    for mod in ("packaging.requirements", "pip._vendor.packaging.requirements"):
        try:
            Requirement = __import__(mod, fromlist=["Requirement"]).Requirement
            break
        except Exception:
            continue
    missing, mismatched, unparsed, present = [], [], [], []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        if Requirement is None:
            name, spec = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0], None
        else:
            try:
                req = Requirement(line)
            except Exception:
                unparsed.append(line)
                continue
            if req.marker is not None and not req.marker.evaluate():
                continue
            name, spec = req.name, req.specifier
        version = dist_version(name)
        if version is None:
            missing.append(line)
        else:
            present.append(name)
            if spec is not None and len(spec) and not spec.contains(version, prereleases=True):
                mismatched.append("%s (installed %s)" % (line, version))
    emit(stage="import ComfyUI's modules")
    failures, numpy_abi = {}, []
    modules = import_names(present)
    wanted = [modules[d] for d in present if d in modules] + start_imports(os.path.dirname(path))
    for module in list(dict.fromkeys(wanted)):
        if module in failures:
            continue
        emit(stage="import %s" % module)
        error, said = quiet_import(module)
        if any(s in (error or "") + said for s in NUMPY_ABI):
            # compiled for another numpy: an import that only printed so still fails at first use
            numpy_abi.append(module)
            error = error or said.strip().splitlines()[-1]
        if error:
            failures[module] = error[:500]
    return {"path": path, "missing": missing, "mismatched": mismatched, "unparsed": unparsed,
            "import_failures": failures, "numpy": dist_version("numpy"), "numpy_abi": numpy_abi}


#: What can change an import's outcome besides the installed files.
IMPORT_ENV = ("LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONPATH", "PYTHONHOME", "CUDA_HOME", "CUDA_PATH")


def install_fingerprint(requirements):
    """One hash of what an import depends on, cheap to compute: this host (a new pod is a new
    container, with its own system libraries), the interpreter, the import environment, the linker
    cache (apt installs of libraries change it), every sys.path entry (pip adds and removes
    *.dist-info folders there, so the folder changes with every install) and its .pth files, and
    the requirements file with the ComfyUI files start_imports reads."""
    import hashlib
    parts = [platform.node(), sys.executable, os.path.realpath(sys.executable)]
    parts += ["%s=%s" % (name, os.environ.get(name, "")) for name in IMPORT_ENV]
    files = ["/etc/ld.so.cache"] + list(sys.path)
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry)) if entry and os.path.isdir(entry) else []
        except OSError:
            names = []
        files += [os.path.join(entry, name) for name in names if name.endswith(".pth")]
    if requirements:
        files += [requirements] + [os.path.join(os.path.dirname(requirements), rel) for _, rel in START_IMPORTS]
    for path in files:
        try:
            st = os.stat(path)
            parts.append("%s %d %d %d" % (path, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            parts.append("%s -" % path)
    return hashlib.sha256("\n".join(parts).encode("utf-8", "replace")).hexdigest()


def main():
    args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    emit(section="python", data=python_facts())
    fingerprint = install_fingerprint(args.get("requirements"))
    reused = bool(args.get("reuse")) and args.get("reuse") == fingerprint
    emit(section="install", data={"fingerprint": fingerprint, "reused": reused})
    torch = torch_facts(bool(args.get("gpu")))
    emit(section="torch", data=torch)
    torch_ok = "error" not in torch and torch.get("cuda_available")
    if args.get("sage"):
        emit(section="sage", data=sage_facts(bool(args.get("gpu")), torch_ok))
    if reused:
        emit(stage="done")
        return
    if args.get("torchset") and "error" not in torch:
        emit(section="torchset", data=torchset_facts())
    if args.get("requirements"):
        emit(stage="requirements")
        emit(section="requirements", data=requirement_facts(args["requirements"]))
    emit(stage="done")


if __name__ == "__main__":
    main()
    # Everything is printed and flushed: skip the interpreter's teardown, which for torch, triton and
    # their CUDA libraries takes most of a second, spent after the facts are known.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
