"""The layout holds: no import cycle, no import from a higher floor, an import inside a function only
for a heavy third-party module or with a comment that says why, and the README's Layout section
names every module."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WINGS = {"podcheck": REPO / "podcheck", "podcheck.checks": REPO / "checks", "podcheck.repairs": REPO / "repairs",
         "podcheck.reports": REPO / "reports"}
#: Floors, lowest first: a module imports only from its own floor or below (data flows one way:
#: config -> host -> facts -> checks -> results -> repairs -> reports, with the services and the CLI on top;
#: redaction sits low, beside the host, because everything written, state included, passes it).
FLOORS = (("podcheck", "podcheck.results", "podcheck.config", "podcheck.probe"),
          ("podcheck.host", "podcheck.reports.redact"),  # the one redaction layer: state records are redacted too
          ("podcheck.domain", "podcheck.facts", "podcheck.syncloop"), ("podcheck.plugin", "podcheck.reports"),
          ("podcheck.runner", "podcheck.checks"), ("podcheck.fix", "podcheck.repairs"), ("podcheck.services", "podcheck.fleet"),
          ("podcheck.cli", "podcheck.__main__"))


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in WINGS.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, ast.stmt, bool]]:
    """(imported podcheck module, the statement, inside a function?) for each import of ours."""
    tree = ast.parse(path.read_text())
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("podcheck"):
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
            names = subs or [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("podcheck")]
        if names:
            inner = any(f.lineno < node.lineno <= (f.end_lineno or f.lineno) for f in functions)
            out += [(n, node, inner) for n in names if n in known]
    return out


def floor(module: str) -> int:
    best = (0, 0)
    for level, prefixes in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best[1] and p != "podcheck":
                best = (level, len(p))
    return best[0]


def test_no_import_cycle_and_no_upward_import():
    known = modules()
    edges = {m: {n for n, _, _ in imports(p, known) if n != m and not m.startswith(n + ".")} for m, p in known.items()}
    upward = [f"{m} -> {n}" for m, ns in edges.items() for n in ns if floor(n) > floor(m)]
    assert upward == [], "imports from a higher floor"
    seen: dict[str, int] = {}
    cycles: list[str] = []

    def visit(m: str, trail: list[str]) -> None:
        if seen.get(m) == 1:
            cycles.append(" -> ".join(trail[trail.index(m):] + [m]))
            return
        if seen.get(m) == 2:
            return
        seen[m] = 1
        for n in sorted(edges[m]):
            visit(n, trail + [m])
        seen[m] = 2

    for m in sorted(edges):
        visit(m, [])
    assert cycles == []


def test_imports_inside_functions_say_why():
    known = modules()
    unexplained = []
    for path in known.values():
        lines = path.read_text().splitlines()
        for _, node, inner in imports(path, known):
            if inner and "#" not in lines[node.lineno - 1]:
                unexplained.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert unexplained == [], "an import inside a function needs a comment saying which cycle or cost it avoids"


def test_readme_layout_names_every_module():
    text = REPO.joinpath("README.md").read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[:layout.index("\n## ", 4)]
    missing = [str(p.relative_to(REPO)) for p in (REPO / "podcheck").rglob("*.py")
               if p.name != "__init__.py" and not re.search(rf"\b{re.escape(p.stem)}\b", layout)]
    assert missing == [], "README's Layout section does not name these modules"


#: Modules allowed over MAX_LINES, each with the reason (none today: every long module had a cut).
LONG: dict[str, str] = {}
MAX_LINES = 400


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES and str(p.relative_to(REPO)) not in LONG}
    assert long == {}, "split these along their jobs, or say in LONG why one module must hold it all"
