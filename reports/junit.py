"""JUnit XML for CI: one testcase per check; the diagnosis is the failure message. A host a fleet
run could not reach has one testcase, `host.reachable`, that errs with the reason."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from podcheck.results import Report


def render(reports: list[Report]) -> str:
    suites = ET.Element("testsuites")
    for report in reports:
        counts = report.summary
        gone = 1 if report.unreachable else 0
        suite = ET.SubElement(suites, "testsuite", {
            "name": f"podcheck {report.host}", "tests": str(len(report.results) + gone),
            "failures": str(counts["failed"]), "errors": str(counts["error"] + gone),
            "skipped": str(counts["skipped"]), "time": f"{report.duration_s:.3f}",
        })
        if report.unreachable:
            case = ET.SubElement(suite, "testcase", {"classname": "host", "name": "host.reachable", "time": "0.000"})
            ET.SubElement(case, "error", {"message": f"unreachable: {report.unreachable}"}).text = report.unreachable
        for r in report.results:
            case = ET.SubElement(suite, "testcase", {"classname": r.area, "name": r.id, "time": f"{r.duration_s:.3f}"})
            if r.status in ("failed", "error"):
                text = r.message + (f"\nto fix: {r.to_fix}" if r.to_fix else "")
                tag = "failure" if r.status == "failed" else "error"
                ET.SubElement(case, tag, {"message": r.message}).text = text
            elif r.status == "skipped":
                ET.SubElement(case, "skipped", {"message": r.message})
            elif r.message:
                ET.SubElement(case, "system-out").text = r.message
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
