"""The library never imports Ray, jobs or serve (../shared/docs/style.md)."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[2] / "reflectrm"
FORBIDDEN = ("ray", "jobs", "serve")


def test_library_imports_no_ray_jobs_or_serve():
    offenders = []
    for path in LIBRARY.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(LIBRARY.parent)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
