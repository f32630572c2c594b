"""The pipeline's layering: orchestration (sweep, review, store, CLI) and the compressor's coding side never import
torch at import time."""

from __future__ import annotations

import subprocess
import sys


def test_orchestration_side_does_not_import_torch():
    code = (
        "import sys, hpcsweep.cli, hpcsweep.sweep, hpcsweep.review, hpcsweep.store, hpcsweep.config, hpcsweep.data;"
        "import hpcsweep.compress.apply, hpcsweep.compress.bundle, hpcsweep.codec;"
        "from hpcsweep.sweep import expand, plan;"
        "heavy = sorted(m for m in ('torch', 'uproot', 'pythia8mc', 'fastjet', 'matplotlib') if m in sys.modules);"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_threads_follow_the_allocation(monkeypatch):
    import os

    from hpcsweep.allocation import allocated_cores

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert allocated_cores() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", str(cores + 7))
    assert allocated_cores() == cores, "never more threads than the cores this process may use"
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert allocated_cores() == cores


#: The layers of the house, lowest first (docs/pipeline.md): a module imports only from its own layer or below.
LAYERS = ("base", "config", "data", "coding", "store", "trial", "sweep", "review", "compress", "cli")
BASE = ("states", "files", "allocation", "claims", "errors", "executors", "exports", "paths", "provenance", "terminal")


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "hpcsweep" or len(parts) == 1:
        return None
    if module.startswith(("hpcsweep.data.varset", "hpcsweep.data.cuts")):
        return "config"  # pydantic, YAML and ast only: what the configuration validates variable sets (and their cuts) with
    if parts[1] == "codec":
        return "coding"
    if parts[1] in BASE:
        return "base"
    return "cli" if parts[1] in ("cli", "__main__") else parts[1]


def _imports(path):
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)


def _modules():
    """(module name, its file) of every module of hpcsweep."""
    from pathlib import Path

    import hpcsweep

    root = Path(hpcsweep.__file__).parent
    for path in sorted(root.rglob("*.py")):
        yield ".".join(("hpcsweep", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"), path


def test_imports_go_one_way_down_the_layers():
    """Every import, at the top of a module or inside a function: data flows one way, and a lower stage never reaches up."""
    against = []
    for module, path in _modules():
        source = _layer(module)
        for target, line in _imports(path):
            layer = _layer(target)
            if source and layer and LAYERS.index(layer) > LAYERS.index(source):
                against.append(f"{module}:{line} ({source}) imports {target} ({layer})")
    assert not against, "\n".join(against)
    assert {_layer(m) for m in ("hpcsweep.sweep.run", "hpcsweep.review.tables", "hpcsweep.states")} == {"sweep", "review", "base"}


def test_no_two_modules_import_each_other():
    """Within a layer too: two modules that import each other (inside a function, or for types only) share a piece
    that has no home of its own (a package and its own modules aside)."""
    imported = {module: {target for target, _ in _imports(path)} for module, path in _modules()}
    loops = [
        f"{a} <-> {b}"
        for a, targets in imported.items()
        for b in sorted(targets)
        if a < b and a in imported.get(b, ()) and not b.startswith(f"{a}.")
    ]
    assert not loops, "\n".join(loops)


def test_package_inits_only_reexport():
    """A reader opening a package sees its public surface: imports and __all__ (data: a lazy table), no code."""
    import ast
    from pathlib import Path

    import hpcsweep

    for init in Path(hpcsweep.__file__).parent.glob("*/__init__.py"):
        body = [n for n in ast.parse(init.read_text()).body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        code = [n for n in body if not isinstance(n, ast.Import | ast.ImportFrom | ast.Assign | ast.AnnAssign)]
        lazy = [n for n in code if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"]
        assert code == lazy, f"{init}: {[type(n).__name__ for n in code]}"


def test_the_configuration_loads_no_numpy():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, hpcsweep.config; print('numpy' in sys.modules)"], capture_output=True, text=True
    )
    assert done.stdout.strip() == "False"
