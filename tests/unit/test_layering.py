"""Imports run one way (../shared/docs/style.md): the library never imports Ray, jobs or serve; inside
the library each module imports only its own layer or lower ones, and no import cycle exists; no
module imports by name at run time (importlib), which a reader of the imports could not see; no job
imports another job. Every import counts, also the ones inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "reflectrm"
FORBIDDEN = ("ray", "jobs", "serve")
JOBS = (
    "build_data",
    "build_critiques",
    "train",
    "score",
    "evaluate",
    "main",
)  # the entries; the rest of jobs/ is their shared Ray glue

# The library's layers, lowest first: a module may import its own layer and those below it.
LAYERS = (
    (
        "reflectrm.config",
        "reflectrm.records",
        "reflectrm.report",
        "reflectrm.rewards",
        "reflectrm.metrics",
        "reflectrm.comparison",
        "reflectrm.ranking",
        "reflectrm.seeds",
    ),
    ("reflectrm.prompts", "reflectrm.parsing", "reflectrm.protocols", "reflectrm.requests", "reflectrm.methods"),
    ("reflectrm.models", "reflectrm.engines.base"),
    ("reflectrm.engines",),
    ("reflectrm.inference",),
    ("reflectrm.data",),
    ("reflectrm.scoring", "reflectrm.evaluation"),
    ("reflectrm.training",),
    ("reflectrm.experiment", "reflectrm.integrations", "reflectrm.critic_judge"),
    ("reflectrm.cli",),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[str]:
    """Every module this file imports (absolute names; `from a import b` also counts a.b when a.b is a module)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def library_modules() -> dict[str, Path]:
    return {module_name(p): p for p in LIBRARY.rglob("*.py")}


def layer_of(module: str) -> int:
    best, layer = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), i
    assert layer is not None, f"{module} is in no layer of LAYERS: add it where it belongs"
    return layer


def library_graph() -> dict[str, set[str]]:
    mods = library_modules()
    mods.pop("reflectrm")  # the package's own __init__ (a docstring): importing it is no dependency
    return {m: {i for i in imports_of(p) if i in mods and i != m} for m, p in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules whose last imports the first), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def string_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_library_imports_no_ray_jobs_or_serve():
    offenders = [
        f"{m}: {i}" for m, p in library_modules().items() for i in imports_of(p) if i.split(".")[0] in FORBIDDEN
    ]
    assert offenders == []


def test_library_imports_follow_the_layers():
    offenders = [
        f"{m} (layer {layer_of(m)}) imports {i} (layer {layer_of(i)})"
        for m, deps in library_graph().items()
        for i in deps
        if layer_of(i) > layer_of(m)
    ]
    assert offenders == []


def test_no_import_cycle_in_the_library():
    assert find_cycle(library_graph()) is None


def test_the_cycle_check_finds_a_cycle():
    graph = library_graph()
    graph["reflectrm.models"] = graph["reflectrm.models"] | {
        "reflectrm.training.trainer"
    }  # the cycle this repo once had
    cycle = find_cycle(graph)
    assert cycle is not None and "reflectrm.models" in cycle and "reflectrm.engines.hf" in cycle


@pytest.mark.parametrize("folder", ["reflectrm", "jobs", "serve"])
def test_no_string_imports(folder):
    assert [s for p in (ROOT / folder).rglob("*.py") for s in string_imports(p)] == []


def test_no_job_imports_another_job():
    offenders = []
    for job in JOBS:
        for i in imports_of(ROOT / "jobs" / f"{job}.py"):
            if i.startswith("jobs.") and i.split(".")[1] in JOBS and i != f"jobs.{job}":
                offenders.append(f"jobs/{job}.py imports {i}")
    assert offenders == []


def test_jobs_and_serve_modules_stay_small():
    """Thin entries (style.md: ~150 lines): no job over 200 lines, no serve module over 250."""
    long = [
        f"{p.relative_to(ROOT)}: {n}"
        for folder, limit in (("jobs", 200), ("serve", 250))
        for p in (ROOT / folder).glob("*.py")
        if (n := len(p.read_text().splitlines())) > limit
    ]
    assert long == []


LIBRARY_LINES = 400  # a library module over this does more than one job: split it by concern


def test_library_modules_stay_small():
    long = [
        f"{p.relative_to(ROOT)}: {n}"
        for p in LIBRARY.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > LIBRARY_LINES
    ]
    assert long == []


def test_the_training_loop_and_steps_take_few_parameters():
    """The worker bundles engine, strategy, reference and rollout engine, so nothing threads them one by one."""
    wide = []
    for name in ("trainer", "step"):
        path = LIBRARY / "training" / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                count = len(node.args.args) + len(node.args.kwonlyargs)
                if count > 5:
                    wide.append(f"{name}.{node.name}: {count}")
    assert wide == []
