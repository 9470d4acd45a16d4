"""The peer-suite checker: junit outcomes (subtests included) against the list of known failures."""

from __future__ import annotations

import re

import pytest

from tests import peer_check

XML = """<?xml version="1.0"?><testsuites><testsuite>
<testcase classname="tests.models.big_bird.test_x.T" name="test_ok"/>
<testcase classname="tests.models.big_bird.test_x.T" name="test_sub"/>
<testcase classname="tests.models.big_bird.test_x.T" name="test_sub"><failure message="boom&#10;more"/></testcase>
<testcase classname="tests.models.big_bird.test_x.T" name="test_skip"><skipped message="why"/></testcase>
<testcase classname="tests.models.big_bird.test_x.T" name="test_known"><error message="known"/></testcase>
</testsuite></testsuites>"""


def _junit(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    for suite in peer_check.SUITES:
        (tmp_path / f"{suite}.xml").write_text(XML)
    return tmp_path


def test_outcomes_count_a_failing_subtest_as_failed(tmp_path):
    res = peer_check.outcomes(_junit(tmp_path) / "modeling-project.xml")
    assert res == {"T::test_ok": ("passed", ""), "T::test_sub": ("failed", "boom"),
                   "T::test_skip": ("skipped", ""), "T::test_known": ("failed", "known")}


def test_check_fails_on_new_failures_and_on_listed_passes(tmp_path, monkeypatch, capsys):
    junit = _junit(tmp_path / "junit")
    expected = tmp_path / "expected.txt"
    monkeypatch.setattr(peer_check, "EXPECTED", expected)
    listed = [f"{s}::T::{t}  # reason" for s in peer_check.SUITES for t in ("test_sub", "test_known")]
    expected.write_text("# header\n" + "\n".join(listed) + "\n")
    assert peer_check.main(["--junit", str(junit)]) == 0
    expected.write_text("\n".join(listed[1:] + ["modeling-project::T::test_ok  # was failing"]) + "\n")
    assert peer_check.main(["--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "::T::test_sub" in out and "NOW PASSED" in out and "::T::test_ok" in out
    peer_check.main(["--junit", str(junit), "--write"])
    m, t = peer_check.SUITES
    assert peer_check.read_expected(expected) == {  # reasons kept where listed, else the failure message
        f"{m}::T::test_sub": "boom", f"{m}::T::test_known": "reason",
        f"{t}::T::test_sub": "reason", f"{t}::T::test_known": "reason"}


def test_test_extra_pins_the_harness_transformers_release():
    """The peer suite's files come from one transformers release (the harness's TRANSFORMERS_VERSION): the test
    extra pins exactly that one, so a new release cannot break the check."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    version_file = peer_check.HARNESS / "TRANSFORMERS_VERSION"
    if not version_file.is_file():
        pytest.skip(f"no peer harness beside the checkout ({version_file})")
    harness = version_file.read_text().strip()
    extra = tomllib.loads((peer_check.REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    pins = [req.replace(" ", "") for req in extra if re.match(r"transformers\b", req)]
    assert pins == [f"transformers=={harness}"], (pins, harness)
