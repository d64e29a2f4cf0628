"""The import order of lm's layers, checked by walking the source with `ast`:

    errors, files, pyfile < config, config_checks < parallel < model < data < train, scaling
        < sweep, convert, evaluate, sample, tasks, finetune < cli

A module may import its own layer or lower ones, never a higher one; scaling (the
fitting library that notebooks import) never imports train, and no module is over
400 lines."""

import ast
import sys
from pathlib import Path

import pytest

LM = Path(__file__).resolve().parents[1] / "lm"
LAYERS = [("errors", "files", "pyfile"), ("config", "config_checks"), ("parallel",), ("model",), ("data",),
          ("train", "scaling"), ("sweep", "convert", "evaluate", "evaluate_cli", "sample", "tasks", "finetune"),
          ("cli",)]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
FORBIDDEN_SIDEWAYS = {("scaling", "train")}
MAX_LINES = 400


def part_of(module: str) -> str:
    """'lm.train.loop' -> 'train'; 'lm' itself (from lm import config) has no part."""
    return module.split(".")[1] if "." in module else ""


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for each lm import in the file, also inside functions; `from lm.a import b`
    counts as importing lm.a.b when b is a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("lm.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "lm" or node.module.startswith("lm."):
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    is_module = (LM.parent / submodule.replace(".", "/")).with_suffix(".py").exists() \
                        or (LM.parent / submodule.replace(".", "/") / "__init__.py").exists()
                    found.append((node.lineno, submodule if is_module else node.module))
    return found


def modules() -> list[Path]:
    return sorted(LM.rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(LM.parent).with_suffix("").parts).removesuffix(".__init__")


def violations(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        here = part_of(module_name(path))
        for line, target in imports(path):
            there = part_of(target)
            if here not in RANK or there not in RANK:
                found.append(f"{path.relative_to(LM.parent)}:{line}: {target} (a layer the test does not know)")
            elif RANK[there] > RANK[here] or (here, there) in FORBIDDEN_SIDEWAYS:
                found.append(f"{path.relative_to(LM.parent)}:{line}: {module_name(path)} imports {target}")
    return found


def test_every_part_of_lm_has_a_layer():
    parts = {part_of(module_name(p)) for p in modules()} - {""}
    assert parts <= set(RANK), sorted(parts - set(RANK))


def test_no_import_runs_up_the_layers():
    assert violations(modules()) == []


def import_cycles(paths: list[Path]) -> list[list[str]]:
    """The strongly connected groups of modules (a cycle, lazy imports included)."""
    names = {module_name(p): p for p in paths}
    graph = {name: set() for name in names}
    for name, path in names.items():
        for _, target in imports(path):
            while target not in names and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in names and target != name:
                graph[name].add(target)
    order, low, stack, cycles = {}, {}, [], []

    def visit(v: str) -> None:  # Tarjan's algorithm
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in graph[v]:
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for name in names:
        if name not in order:
            visit(name)
    return cycles


def test_no_import_cycles():
    assert import_cycles(modules()) == []


def private_imports(paths: list[Path]) -> list[str]:
    """`from lm.x import _name`: a module reaching into another's private names."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lm"):
                found += [f"{path.relative_to(LM.parent)}:{node.lineno}: {node.module}.{a.name}"
                          for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_module_imports_another_modules_private_names():
    assert private_imports(modules()) == []


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(LM.parent)): n for p in modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


@pytest.mark.parametrize("source, message", [
    ("from lm.train.loop import train\n", "lm/parallel/bad.py:1: lm.parallel.bad imports lm.train.loop"),
    ("import lm.sweep.grid\n", "lm/parallel/bad.py:1: lm.parallel.bad imports lm.sweep.grid"),
    ("def f():\n    from lm.model import decoder\n", "lm/parallel/bad.py:2: lm.parallel.bad imports lm.model"),
])
def test_the_checker_finds_an_upward_import(tmp_path, monkeypatch, source, message):
    fake = tmp_path / "lm"
    (fake / "parallel").mkdir(parents=True)
    (fake / "parallel" / "bad.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "LM", fake)
    assert violations([fake / "parallel" / "bad.py"]) == [message]


def test_the_checker_finds_a_cycle_through_a_lazy_import(tmp_path, monkeypatch):
    fake = tmp_path / "lm"
    (fake / "scaling").mkdir(parents=True)
    (fake / "scaling" / "a.py").write_text("from lm.scaling.b import g\n")
    (fake / "scaling" / "b.py").write_text("def g():\n    from lm.scaling import a\n")
    monkeypatch.setattr(sys.modules[__name__], "LM", fake)
    paths = sorted(fake.rglob("*.py"))
    assert import_cycles(paths) == [["lm.scaling.a", "lm.scaling.b"]]


def test_the_checker_finds_a_private_import(tmp_path, monkeypatch):
    fake = tmp_path / "lm"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "mix.py").write_text("from lm.data.loader import PackedRows, _host_batches\n")
    monkeypatch.setattr(sys.modules[__name__], "LM", fake)
    assert private_imports([fake / "data" / "mix.py"]) == ["lm/data/mix.py:1: lm.data.loader._host_batches"]
