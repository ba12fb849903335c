"""The layout: the library (mlp/*.py) imports no program (mlp/programs/, and the launchers mlp/NAME.py
that run them), and no module imports itself round a circle. Read from the source with ast: every
import, at the top or inside a function."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCHERS = {"train", "evaluate", "predict", "serve", "sweep"}  # mlp/NAME.py: `python -m mlp.NAME`


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The mlp modules `path` imports (`from . import x` counted as mlp.x if that is a module)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            stem = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(stem)
            found |= {f"{stem}.{alias.name}" for alias in node.names}
    return {name for name in found if name in MODULES and name != here}


MODULES = {module_name(p): p for p in (ROOT / "mlp").rglob("*.py")}
GRAPH = {name: imports(path) for name, path in MODULES.items()}


def is_program(name: str) -> bool:
    return name.startswith("mlp.programs") or name.removeprefix("mlp.") in LAUNCHERS


def test_the_reader_of_imports_sees_each_kind_of_import():
    """The oracle's own check: relative, absolute, from-a-package and inside-a-function imports."""
    assert {"mlp.recipe", "mlp.fitting", "mlp.progress", "mlp.training", "mlp.history"} <= GRAPH["mlp.fitting"] | {"mlp.fitting"}
    assert {"mlp.programs", "mlp.programs.train"} <= GRAPH["mlp.train"]
    assert "mlp.plots" in GRAPH["mlp.programs.sweep"]  # imported inside main()
    assert "mlp.checkpoint" in GRAPH["mlp.programs.evaluate"]  # from .. import checkpoint


def test_the_library_imports_no_program():
    arrows = [(a, b) for a, targets in GRAPH.items() if not is_program(a) and a != "mlp" for b in targets if is_program(b)]
    assert arrows == []


def test_no_module_imports_itself_round_a_circle():
    circles = []

    def visit(name: str, path: list[str]) -> None:
        for target in GRAPH[name]:
            if target in path:
                circles.append(path[path.index(target):] + [target])
            elif target not in done:
                visit(target, path + [target])
        done.add(name)

    done: set[str] = set()
    for name in sorted(GRAPH):
        if name not in done:
            visit(name, [name])
    assert circles == []


def test_a_circle_and_an_arrow_into_a_program_are_seen():
    """Break the graph on purpose: the two checks above find what they look for."""
    global GRAPH
    real = GRAPH
    try:
        GRAPH = {**real, "mlp.nn": real["mlp.nn"] | {"mlp.fitting"}, "mlp.data": real["mlp.data"] | {"mlp.train"}}
        for check in (test_the_library_imports_no_program, test_no_module_imports_itself_round_a_circle):
            try:
                check()
            except AssertionError:
                continue
            raise AssertionError(f"{check.__name__} missed what was put there")
    finally:
        GRAPH = real


def tape_imports(path: Path) -> set[str]:
    """Every name `path` takes from tape: `tape.x` of `from tape import x`, `tape._m` of `from tape._m import x`
    or `import tape._m`, and `tape.x` read as an attribute of the module `tape`."""
    taken = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            taken |= {alias.name for alias in node.names if alias.name.startswith("tape.")}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module and node.module.split(".")[0] == "tape":
            taken |= {node.module} if node.module != "tape" else {f"tape.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "tape":
            taken.add(f"tape.{node.attr}")
    return taken


def test_mlp_uses_only_tapes_public_api():
    import tape

    public = {f"tape.{name}" for name in tape.__all__} | {"tape.kernels"}
    private = {f"{module_name(path)}: {name}" for path in MODULES.values() for name in tape_imports(path) - public}
    assert private == set()


def test_the_reader_of_tapes_names_sees_a_private_one(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import tape\nfrom tape._trace import CHUNK\nfrom tape import Tensor\nx = tape._tensor\n")
    assert tape_imports(source) == {"tape._trace", "tape.Tensor", "tape._tensor"}


def test_tape_imports_nothing_of_mlp():
    for path in (ROOT / "tape").rglob("*.py"):
        names = {alias.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Import)
                 for alias in node.names} | {node.module or "" for node in ast.walk(ast.parse(path.read_text()))
                                              if isinstance(node, ast.ImportFrom) and not node.level}
        assert not any(n.split(".")[0] == "mlp" for n in names), path
