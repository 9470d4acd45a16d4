"""transformers' own BigBird tests run against this project, checked against tests/peer_expected.txt.

The harness is ../shared/peer/transformers-bigbird (read-only; see its run.sh). This script does what run.sh
does for the two *project* suites only (transformers against its own tests is not re-run): copy the harness
to a temporary folder, generate the import-switched test files, run them with this checkout first on the
path, and compare each test's outcome with the list of tests we are known to fail.

    python tests/peer_check.py                 # run, compare, exit 1 on any difference
    python tests/peer_check.py --write         # run and rewrite tests/peer_expected.txt (keeps reasons)
    python tests/peer_check.py --junit DIR     # compare junit XML already in DIR (no run)

A test fails the check when it fails but is not listed (a regression) or is listed but no longer fails (then
drop it from the list: ``--write``). Each line of the list is ``suite::Class::test  # reason``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO.parent / "shared" / "peer" / "transformers-bigbird"
EXPECTED = REPO / "tests" / "peer_expected.txt"
SUITES = {
    "modeling-project": "tests/models/big_bird/test_modeling_big_bird_project.py",
    "tokenizer-project": "tests/models/big_bird/test_tokenization_big_bird_localvocab_project.py",
}
_LINE = re.compile(r"^(?P<test>\S+)\s*(?:#\s*(?P<reason>.*))?$")


def outcomes(xml_path: Path) -> dict[str, tuple[str, str]]:
    """``Class::test`` -> (passed | failed | skipped, first line of the failure). A test with any failing
    part (a subtest) counts as failed, as in run.sh."""
    rank = {"passed": 0, "skipped": 1, "failed": 2}
    res: dict[str, tuple[str, str]] = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        name = case.get("classname", "").split(".")[-1] + "::" + case.get("name", "")
        state, msg = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                state = "failed"
                msg = (child.get("message") or "").strip().splitlines()[0][:160] if child.get("message") else ""
            elif child.tag == "skipped" and state != "failed":
                state = "skipped"
        if name not in res or rank[state] > rank[res[name][0]]:
            res[name] = (state, msg)
    return res


def specific_tests() -> set[str]:
    """Names of the tests written in transformers' BigBird test class itself (not in the common mixins)."""
    path = HARNESS / "tests/models/big_bird/test_modeling_big_bird.py"
    if not path.exists():
        return set()
    src = path.read_text(encoding="utf-8")
    body = src.split("class BigBirdModelTest(", 1)[1].split("\nclass ", 1)[0]
    return {"BigBirdModelTest::" + m for m in re.findall(r"^    def (test_\w+)", body, flags=re.M)}


def run_suites(out_dir: Path, python: str) -> None:
    """Generate the project suites from the harness and run them, writing ``<suite>.xml`` into ``out_dir``."""
    if not HARNESS.is_dir():
        sys.exit(f"peer harness not found at {HARNESS}")
    work = Path(tempfile.mkdtemp(prefix="peer-"))
    try:
        shutil.copytree(HARNESS, work, dirs_exist_ok=True)
        for p in [work, *work.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
        tf_dir = subprocess.check_output([python, "-c", "import os, transformers; "
                                          "print(os.path.dirname(transformers.__file__))"], text=True).strip()
        (work / "src").mkdir(exist_ok=True)
        (work / "src" / "transformers").symlink_to(tf_dir)
        env = {**os.environ, "PYTHONPATH": f"{work}{os.pathsep}{REPO}", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        for script in ("make_localvocab_test.py", "make_project_tests.py"):
            subprocess.run([python, script], cwd=work, env=env, check=True, stdout=subprocess.DEVNULL)
        out_dir.mkdir(parents=True, exist_ok=True)
        for suite, path in SUITES.items():
            with open(out_dir / f"{suite}.log", "w") as log:
                subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "--tb=native",
                                "--timeout", "300", f"--junitxml={out_dir / f'{suite}.xml'}", path],
                               cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=1200)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_expected(path: Path | None = None) -> dict[str, str]:
    path = EXPECTED if path is None else path
    expected: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        line = line.strip()
        if line and not line.startswith("#"):
            m = _LINE.match(line)
            if m is None:
                raise ValueError(f"bad line in {path.name}: {line!r}")
            expected[m["test"]] = (m["reason"] or "").strip()
    return expected


def collect(junit_dir: Path) -> dict[str, tuple[str, str]]:
    results: dict[str, tuple[str, str]] = {}
    for suite in SUITES:
        xml_path = junit_dir / f"{suite}.xml"
        if not xml_path.exists():
            sys.exit(f"no junit XML for {suite} in {junit_dir} (see {suite}.log there)")
        results.update({f"{suite}::{k}": v for k, v in outcomes(xml_path).items()})
    return results


def summary(results: dict[str, tuple[str, str]]) -> list[str]:
    lines = []
    for suite in SUITES:
        states = [s for k, (s, _) in results.items() if k.startswith(suite + "::")]
        lines.append(f"{suite}: {states.count('passed')} passed, {states.count('failed')} failed, "
                     f"{states.count('skipped')} skipped")
    specific = {f"modeling-project::{k}" for k in specific_tests()}
    for label, keep in (("BigBird-specific", lambda k: k in specific),
                        ("common (mixins)", lambda k: k not in specific and "::BigBirdModelTest::" in k)):
        states = [s for k, (s, _) in results.items() if k.startswith("modeling-project::") and keep(k)]
        lines.append(f"  modeling {label}: {states.count('passed')} passed of "
                     f"{states.count('passed') + states.count('failed')} run ({states.count('skipped')} skipped)")
    return lines


def write_expected(results: dict[str, tuple[str, str]], old: dict[str, str]) -> None:
    failed = sorted(k for k, (s, _) in results.items() if s == "failed")
    header = ("# Peer tests (transformers' BigBird tests on this project) that we still fail, each with a reason.\n"
              "# Regenerate after a change: python tests/peer_check.py --write (keeps the reasons written here).\n")
    body = [f"{k}  # {old.get(k) or results[k][1] or 'fails'}" for k in failed]
    EXPECTED.write_text(header + "\n".join(body) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--junit", type=Path, help="compare the junit XML in this folder instead of running")
    ap.add_argument("--out", type=Path, help="where to keep junit XML and logs (default: a temporary folder)")
    ap.add_argument("--write", action="store_true", help="rewrite tests/peer_expected.txt from this run")
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args(argv)
    junit_dir = args.junit
    if junit_dir is None:
        junit_dir = args.out or Path(tempfile.mkdtemp(prefix="peer-junit-"))
        run_suites(junit_dir, args.python)
    results = collect(junit_dir)
    print("\n".join(summary(results)))
    expected = read_expected()
    if args.write:
        write_expected(results, expected)
        print(f"wrote {EXPECTED}")
        return 0
    new_failures = sorted(k for k, (s, _) in results.items() if s == "failed" and k not in expected)
    fixed = sorted(k for k in expected if results.get(k, ("absent",))[0] != "failed")
    for k in new_failures:
        print(f"REGRESSION (fails, not in peer_expected.txt): {k}: {results[k][1]}")
    for k in fixed:
        print(f"NOW {results.get(k, ('absent',))[0].upper()} (listed in peer_expected.txt; remove it): {k}")
    if new_failures or fixed:
        print(f"peer check failed; junit XML and logs: {junit_dir}")
        return 1
    print(f"peer check ok: {len(expected)} known failures, no change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
