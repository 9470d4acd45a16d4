"""Layering rules read off the source (no imports run): what may import what."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports (``import a.b`` -> ``a.b``; ``from a import b`` -> ``a``), at any depth
    (imports inside functions count too); relative imports are left out."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_imported_modules_sees_nested_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from tests.helpers import x\n    import tests.cluster\n")
    assert imported_modules(source) == {"os", "tests.helpers", "tests.cluster"}


@pytest.mark.parametrize("folder", ["scripts", "benchmarks"])
def test_scripts_and_benchmarks_import_nothing_from_tests(folder):
    offenders = {str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path)
                                                     if m == "tests" or m.startswith("tests."))
                 for path in sorted((ROOT / folder).rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}
