"""The dependency rule of docs/ARCHITECTURE.md, read off the code: every test parses the imports of
the project's modules (not tests, not migrations) and fails naming the import that breaks the rule."""

from __future__ import annotations

import ast
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("accounts", "marketplace", "compute", "config", "cloakroom_client", "bench")
MAX_LINES = 400

# Who may import whom, by the importing module's prefix (the longest that matches wins). A prefix
# imports freely within itself.
ALLOWED: dict[str, tuple[str, ...]] = {
    # The shared protocol and the pure engines: no Django, no server module.
    "cloakroom_client.protocol": (),
    "compute.engines": ("cloakroom_client.protocol",),
    # The owner-side SDK and CLI speak the public API only.
    "cloakroom_client": (),
    # The core of config (errors, fields, settings helpers, middleware, the OpenAPI helpers) sits
    # under every app; the modules that wire the apps together (URL maps, health, Celery) sit above.
    "config": (),
    "config.urls": PROJECT,
    "config.api_urls": PROJECT,
    "config.health": PROJECT,
    "config.celery_app": PROJECT,
    # The apps, bottom up: accounts <- marketplace <- compute.
    "accounts": ("config", "cloakroom_client.protocol"),
    "marketplace": ("config", "accounts", "compute.engines", "cloakroom_client.protocol"),
    "compute": ("config", "accounts", "marketplace", "cloakroom_client.protocol"),
    # Benchmarks measure everything.
    "bench": PROJECT,
}
# Server modules that play the data owner in the demo: seeding encrypts the demo's HE bundle and
# writes its key agent's files exactly as the owner's `cloakroom he encrypt` would.
OWNER_SIDE_EXCEPTIONS = {
    ("marketplace.management.commands.seed_demo", "cloakroom_client.he"),
}
# Imports kept inside a function on purpose, each with its reason.
DELIBERATELY_LAZY = {
    # `cloakroom he publish` on an installation without the upload module says so in a sentence
    # instead of failing to start (tests/cloakroom_client/he/test_encrypt.py).
    ("cloakroom_client.cli.bundles", "cloakroom_client.upload"),
    # The PATE engine imports scikit-learn: loaded where a PATE job is submitted, run or given a student,
    # not by every process that registers the job kinds or loads the URLs (a second start of the demo
    # imports no scikit-learn: tests/integration/test_readme_tour.py).
    ("compute.kinds.pate", "compute.engines.pate"),
    ("compute.pate_services", "compute.engines.pate"),
    ("compute.pate_student", "compute.engines.pate"),
}
NO_DJANGO = ("cloakroom_client", "compute.engines")
DJANGO = ("django", "rest_framework", "drf_spectacular", "celery", "kombu")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the project module imported (a module, never a name inside one)
    names: tuple[str, ...]  # the names taken by ``from target import ...``
    line: int
    in_function: bool

    def __str__(self) -> str:
        where = " (inside a function)" if self.in_function else ""
        return f"{self.module}:{self.line} imports {self.target}{where}"


@cache
def source_files() -> dict[str, Path]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    out = {}
    for name in listed.stdout.split():
        path = Path(name)
        if path.parts[0] not in PROJECT or "migrations" in path.parts:
            continue
        parts = list(path.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = ROOT / path
    return out


def resolve(module: str, node: ast.ImportFrom | ast.Import, alias: ast.alias) -> tuple[str, tuple[str, ...]]:
    """The module an import reads, and the names it takes from it."""
    modules = source_files()
    if isinstance(node, ast.Import):
        return alias.name, ()
    base = node.module or ""
    if node.level:
        package = module.split(".")
        if not modules[module].name == "__init__.py":
            package = package[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    candidate = f"{base}.{alias.name}"
    if candidate in modules:  # ``from package import submodule``
        return candidate, ()
    return base, (alias.name,)


@cache
def imports() -> list[Import]:
    found = []
    for module, path in source_files().items():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        inside = {id(n) for f in functions for n in ast.walk(f) if n is not f}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for alias in node.names:
                target, names = resolve(module, node, alias)
                found.append(Import(module, target, names, node.lineno, id(node) in inside))
    return found


def project_imports() -> list[Import]:
    return [i for i in imports() if i.target.split(".")[0] in PROJECT]


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def rule_for(module: str) -> str:
    return max((p for p in ALLOWED if within(module, p)), key=len)


def test_every_project_module_is_read():
    modules = source_files()
    assert {"compute.services", "compute.kinds", "cloakroom_client.protocol.noise", "accounts.models"} <= set(modules)
    assert any(i.target == "compute.lifecycle" for i in project_imports())


def test_each_module_imports_only_the_layers_below_it():
    broken = []
    for imp in project_imports():
        rule = rule_for(imp.module)
        if within(imp.target, rule) or any(within(imp.target, allowed) for allowed in ALLOWED[rule]):
            continue
        if (imp.module, imp.target) in OWNER_SIDE_EXCEPTIONS:
            continue
        broken.append(f"{imp} (rule {rule!r} allows {', '.join(ALLOWED[rule]) or 'nothing else'})")
    assert broken == []


def test_the_protocol_the_engines_and_the_client_import_no_django():
    broken = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in imports()
        if any(within(i.module, p) for p in NO_DJANGO) and i.target.split(".")[0] in DJANGO
    ]
    assert broken == []


def test_no_import_circle_between_project_modules():
    """Module-level imports only: a task imports its service inside its body (one of the few places an
    import may hide in a function, checked below), which keeps services and tasks apart at load."""
    graph: dict[str, set[str]] = {}
    for imp in project_imports():
        if not imp.in_function and imp.target != imp.module:
            graph.setdefault(imp.module, set()).add(imp.target)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert [" -> ".join(c) for c in circles] == []


def hides_imports_by_design(module: str) -> bool:
    """Where an import inside a function is the framework's rule, not a dodge: a task imports its
    service in its body; an app's ``ready()`` imports what needs the app registry; a benchmark sets
    Django up at run time before it may import a model."""
    return module.endswith((".tasks", ".apps")) or within(module, "bench")


def test_project_imports_hide_in_functions_only_where_the_framework_wants_them():
    broken = [
        str(i)
        for i in project_imports()
        if i.in_function and not hides_imports_by_design(i.module) and (i.module, i.target) not in DELIBERATELY_LAZY
    ]
    assert broken == []


def test_no_private_name_is_imported_from_another_module():
    broken = [f"{i} takes {', '.join(n for n in i.names if n.startswith('_'))}" for i in project_imports()]
    broken = [b for b, i in zip(broken, project_imports(), strict=True) if any(n.startswith("_") for n in i.names)]
    assert broken == []


def test_no_module_is_over_the_size_limit():
    long = {
        module: n
        for module, path in source_files().items()
        if (n := len(path.read_text("utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
