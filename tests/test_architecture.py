"""The structure the code promises (docs/architecture.md): layered packages, no import cycle, an engine that knows
no domain, no streamlit in core, only pages in pages/, small modules and functions."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"
#: Layers, lowest first: a module may import its own package and the ones before it.
LAYERS = ("base", "runs", "data", "learning", "analysis", "curation", "feedback", "detection", "cli")
#: Top-level modules of core and the layer they sit in.
TOP_MODULES = {"core": "cli", "core.__main__": "cli", "core.kinds": "cli"}
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The core module an import names (``core.data`` + ``built`` -> ``core.data.built``), else None."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported core module, line, inside a function) for every import of a core module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nested: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested |= {id(n) for n in ast.walk(fn) if n is not fn}
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            target = _resolve(n, modules) if n.startswith("core") else None
            if target:
                out.append((target, node.lineno, id(node) in nested))
    return out


def _layer(module: str) -> str:
    if module in TOP_MODULES:
        return TOP_MODULES[module]
    return module.split(".")[1]


def _graph() -> dict[str, set[str]]:
    """Module -> the core modules it imports by name (``from core import runs`` names the package ``core.runs``)."""
    modules = _modules()
    return {m: {t for t, _, _ in _imports(p, modules) if t != m} for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_core_module_sits_in_a_known_layer():
    unknown = [m for m in _modules() if _layer(m) not in LAYERS]
    assert unknown == [], f"modules outside the layered packages {LAYERS}: {unknown}"


def test_core_has_no_import_cycle():
    assert _cycles(_graph()) == []


def test_core_uses_absolute_imports_only():
    relative = [f"{p.relative_to(ROOT)}:{n.lineno}" for p in CORE.rglob("*.py")
                for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert relative == [], "relative imports hide edges from the layer checks"


def test_layers_import_only_downwards():
    modules = _modules()
    wrong = []
    for m, p in modules.items():
        mine = LAYERS.index(_layer(m))
        for target, line, _ in _imports(p, modules):
            if LAYERS.index(_layer(target)) > mine:
                wrong.append(f"{p.relative_to(ROOT)}:{line} ({_layer(m)}) imports {target} ({_layer(target)})")
    assert wrong == [], "\n".join(wrong)


def test_no_function_level_imports_of_core_modules():
    modules = _modules()
    nested = [f"{p.relative_to(ROOT)}:{line} imports {t} inside a function"
              for m, p in modules.items() for t, line, inside in _imports(p, modules) if inside]
    assert nested == [], "\n".join(nested)


def test_run_engine_imports_no_domain_module():
    modules = _modules()
    engine = [m for m in modules if _layer(m) == "runs"]
    assert engine, "no run engine found in core.runs"
    bad = [f"{m} imports {t}" for m in engine for t, _, _ in _imports(modules[m], modules)
           if _layer(t) not in ("base", "runs")]
    assert bad == [], bad


def test_core_never_imports_streamlit_or_the_page_layer():
    bad = []
    for p in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{p.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                    if n.split(".")[0] in ("streamlit", "ui", "pages", "Home")]
    assert bad == []


def test_pages_folder_holds_only_routed_pages():
    home = (ROOT / "Home.py").read_text(encoding="utf-8")
    files = sorted(p.name for p in (ROOT / "pages").iterdir() if p.name != "__pycache__")
    helpers = [f for f in files if not f.endswith(".py") or f.startswith("_")]
    assert helpers == [], f"not pages: {helpers} (page helpers live in ui/)"
    unrouted = [f for f in files if f'"pages/{f}"' not in home]
    assert unrouted == [], f"pages that Home.py's st.navigation does not route: {unrouted}"
    unguarded = [f for f in files if "ensure_router()" not in (ROOT / "pages" / f).read_text(encoding="utf-8")]
    assert unguarded == [], f"pages that do not hand a first visit to the router: {unguarded}"


def test_every_package_says_what_lives_there_and_what_it_may_import():
    for init in sorted(CORE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "May import" in doc, f"{init.relative_to(ROOT)}: the docstring should say what it may import"


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path):
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") <= MAX_MODULE_LINES, f"{path.name}: {text.count(chr(10))} lines; split it by concern"
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(ast.parse(text))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The graph helpers find a planted cycle and a function-level import (so a green run means something)."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    src = tmp_path / "m.py"
    src.write_text("import core.base.config\n\ndef f():\n    from core.data import built\n")
    mods = {"core.base.config": src, "core.data.built": src}
    assert _imports(src, mods) == [("core.base.config", 1, False), ("core.data.built", 4, True)]
