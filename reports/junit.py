"""JUnit XML for CI: one testcase per check; the diagnosis is the failure message."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from podcheck.results import Report


def render(reports: list[Report]) -> str:
    suites = ET.Element("testsuites")
    for report in reports:
        counts = report.summary
        suite = ET.SubElement(suites, "testsuite", {
            "name": f"podcheck {report.host}", "tests": str(len(report.results)),
            "failures": str(counts["failed"]), "errors": str(counts["error"]),
            "skipped": str(counts["skipped"]), "time": f"{report.duration_s:.3f}",
        })
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
