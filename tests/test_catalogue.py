"""The catalogue as data: check ids, prerequisites, repairs and remedies agree with each other, with
the code's layout, and with the README's tables. A new check or repair that breaks one of them fails here."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from podcheck import config, runner
from podcheck.fix.registry import registry

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def specs():
    return runner.catalogue(config.load(None, env={}))


def test_each_id_is_its_file_area_dot_function(specs):
    for s in specs:
        file, function = s.where.split("::")
        assert file == f"test_{s.area}.py", s
        assert function == "test_" + s.id.split(".", 1)[1], s
    assert len({s.id for s in specs}) == len(specs), "check ids are unique"


def test_every_need_names_a_real_check(specs):
    ids = {s.id for s in specs}
    for s in specs:
        assert set(s.needs) <= ids, f"{s.id} needs {sorted(set(s.needs) - ids)}, which no check has"


def test_every_marker_repair_is_registered_and_every_repair_is_reached(specs):
    repairs, cfg = registry(), config.load(None, env={})
    for s in specs:
        assert s.repair is None or s.repair in repairs, f"{s.id} names repair {s.repair!r}, which is not registered"
        assert s.repair or s.remedy, f"{s.id} has neither a repair nor a remedy: a failure would say nothing to do"
    reached = {s.repair for s in specs if s.repair}
    grew = True
    while grew:  # a repair is reached when a check names it, or a reached repair needs it
        more = {n for rid in reached for n in repairs[rid].needed(cfg) if n not in reached}
        reached |= more
        grew = bool(more)
    assert set(repairs) - reached == set(), "repairs no check or repair leads to"


def _table(heading: str) -> list[list[str]]:
    """The rows of the first Markdown table after `heading`, as cells."""
    text = README.read_text()
    body = text[text.index(heading):]
    rows = []
    for line in body.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))])
        elif rows:
            break
    return rows[2:]  # header and rule


def test_readme_check_table_equals_podcheck_list_json(specs):
    from podcheck.cli import main
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["list", "--json"]) == 0
    listed = json.loads(out.getvalue())
    rows = _table("## Checks")
    readme = [(re.sub(r"`", "", r[0]), [p.strip() for p in r[1].split(",")], r[3]) for r in rows]
    assert [r[0] for r in readme] == [c["id"] for c in listed], "the README lists the checks in `podcheck list` order"
    for (cid, profiles, repair), c in zip(readme, listed):
        assert profiles == c["profiles"], cid
        if c["repair"]:
            assert repair == f"`{c['repair']}`", cid
        else:
            assert repair == f"– ({c['remedy']})", cid


def test_readme_repair_table_equals_the_registry():
    repairs, cfg = registry(), config.load(None, env={})  # the defaults: sage required
    rows = _table("## Repairs")
    assert [re.sub(r"`", "", r[0]) for r in rows] == list(repairs), "the README lists the repairs in plan order"
    for r in rows:
        needs = {re.sub(r"[`\s]", "", n).split("(")[0] for n in r[1].split(",")} - {"–"}
        assert needs == set(repairs[r[0].strip("`")].needed(cfg)), r[0]
        assert r[2].split(",")[0].strip() == repairs[r[0].strip("`")].blast, r[0]
