"""The shape of qwenchat/, read from its imports with ast: no import circle and one direction of layers.

Every import counts: at module level, under `if TYPE_CHECKING:`, and inside functions (the lazy ones that keep
`--help` light). A lazy import runs after every module has loaded, so Python does not mind a circle through
one, but a reader does: it is the same dependency, only hidden.

The layers, lowest first (a module imports modules of a lower rank, or of its own group):

    0 leaf          qwenchat, errors, paths, text/ (pure text functions)
    1 shared        settings, models/ (what every layer reads: the settings schema, loading a model)
    2 vocabulary    probs.record, reasoning, tools.calls, structured.schema: the pure part of a feature (its
                    records and parsers, importing only leaves) that engines speak and a conversation stores
    3 contract      engines.api, engines.turn (+ job, worker), engines.speculative, engines.prefix_cache,
                    engines.generation_config: what every engine shares and what the layers above see of one
    4 conversation  conversation/: the data model, the file format, the store, export
    5 features      probs/, compare/, tools/, structured/, batch/ (but its runner): each feature's flows
    6 chat          chat/: the headless session        6 engines   engines/<engine>/: one package per engine
    7 app           commands/, ui/, batch.runner: what drives a session and shows it
    8 cli           cli/, __main__, environment (the outside world the command line is given): parses the
                    arguments and wires the rest

A group of the same rank is a neighbour, not a dependency: the session never imports an engine package (the
CLI hands it one) and no engine imports the session. An engine package imports only the contract, the
vocabulary, the shared and leaf modules and its own package.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "qwenchat"

# (group, rank, modules): `pkg.*` is a package and everything under it, any other name that module alone; a
# module belongs to the group of its most specific entry, and a new module has none until it is placed here.
LAYERS: list[tuple[str, int, tuple[str, ...]]] = [
    ("leaf", 0, ("qwenchat", "qwenchat.errors", "qwenchat.paths", "qwenchat.text.*")),
    ("shared", 1, ("qwenchat.settings", "qwenchat.config_file", "qwenchat.models.*")),
    (
        "vocabulary",
        2,
        (
            "qwenchat.probs.record",
            "qwenchat.reasoning",
            "qwenchat.tools.calls",
            "qwenchat.structured.schema",
            "qwenchat.images.*",
        ),
    ),
    (
        "contract",
        3,
        (
            "qwenchat.engines",
            "qwenchat.engines.api",
            "qwenchat.engines.turn",
            "qwenchat.engines.speculative",
            "qwenchat.engines.prefix_cache",
            "qwenchat.engines.job",
            "qwenchat.engines.worker",
            "qwenchat.engines.generation_config",
        ),
    ),
    ("conversation", 4, ("qwenchat.conversation.*",)),
    (
        "features",
        5,
        (
            "qwenchat.probs.*",
            "qwenchat.compare.*",
            "qwenchat.tools.*",
            "qwenchat.structured.*",
            "qwenchat.batch.*",
            "qwenchat.report.*",
            "qwenchat.checks.*",
        ),
    ),
    ("chat", 6, ("qwenchat.chat.*",)),
    (
        "engines",
        6,
        ("qwenchat.engines.transformers.*", "qwenchat.engines.llamacpp.*", "qwenchat.engines.openai.*"),
    ),
    (
        "app",
        7,
        (
            "qwenchat.commands.*",
            "qwenchat.ui.*",
            "qwenchat.batch.runner",
            "qwenchat.batch.parallel",
            "qwenchat.checks.model_judge",
        ),
    ),
    ("cli", 8, ("qwenchat.cli.*", "qwenchat.__main__", "qwenchat.environment")),
]
ENGINE_MAY_IMPORT = {"leaf", "shared", "vocabulary", "contract"}  # and its own engine package


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> tuple[str, int] | None:
    """(group, rank) of a module: its entry in LAYERS (an exact name before a package's `.*`, the deepest
    package first); None when it has none."""
    best: tuple[int, str, int] | None = None
    for group, rank, entries in LAYERS:
        for entry in entries:
            package = entry.removesuffix(".*")
            if entry == module:
                specificity = 1000
            elif entry.endswith(".*") and (module == package or module.startswith(package + ".")):
                specificity = len(package)
            else:
                continue
            if best is None or specificity > best[0]:
                best = (specificity, group, rank)
    return None if best is None else (best[1], best[2])


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported qwenchat module: line of the first import}, every import statement counted."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, dict[str, int]] = {name: {} for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..a import b
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                # `from pkg import mod` names the submodule; `from mod import name` the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for target in targets:
                if target in files and target != name:
                    line = graph[name].setdefault(target, node.lineno)
                    graph[name][target] = min(line, node.lineno)
    return graph


def find_cycle(graph: dict[str, set[str]] | dict[str, dict[str, int]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def where(graph: dict[str, dict[str, int]], module: str, target: str) -> str:
    path = module.replace(".", "/") + ("/__init__.py" if module == "qwenchat" else ".py")
    return f"{path}:{graph[module][target]}"


def layering_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    out = []
    for module, targets in sorted(graph.items()):
        group, rank = layer(module) or ("?", -1)
        for target in sorted(targets):
            t_group, t_rank = layer(target) or ("?", -1)
            if t_rank < rank or t_group == group:
                continue
            out.append(
                f"{module} ({group}, rank {rank}) imports {target} ({t_group}, rank {t_rank}) "
                f"at {where(graph, module, target)}"
            )
    return out


def engine_package(module: str) -> str:
    return ".".join(module.split(".")[:3])  # qwenchat.engines.<engine>


def engine_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    out = []
    for module, targets in sorted(graph.items()):
        if (layer(module) or ("",))[0] != "engines":
            continue
        for target in sorted(targets):
            t_group = (layer(target) or ("?",))[0]
            if t_group in ENGINE_MAY_IMPORT or engine_package(target) == engine_package(module):
                continue
            out.append(f"{module} imports {target} ({t_group}) at {where(graph, module, target)}")
    return out


def test_the_graph_is_read():
    graph = import_graph()
    assert "qwenchat.chat.session" in graph["qwenchat.ui.repl"]
    assert "qwenchat.commands.display" in graph["qwenchat.commands"]
    assert "qwenchat.commands.registry" in graph["qwenchat.commands.conversation"]
    # function-level and TYPE_CHECKING imports are counted too
    assert "qwenchat.conversation.export" in graph["qwenchat.commands.sessions"]
    assert "qwenchat.ui.render" in graph["qwenchat.environment"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_has_a_layer():
    """A new module is placed in the table on purpose, not by a default."""
    assert [m for m in import_graph() if layer(m) is None] == []
    assert layer("qwenchat.newthing") is None and layer("qwenchat.engines.mlx") is None
    assert layer("qwenchat.batch.runner") == ("app", 7) and layer("qwenchat.batch.plan") == ("features", 5)
    assert layer("qwenchat.probs") == ("features", 5) and layer("qwenchat.engines") == ("contract", 3)


def test_the_layers_point_one_way():
    violations = layering_violations(import_graph())
    assert violations == [], "\n".join(violations)


def test_a_violation_names_both_modules():
    graph = {"qwenchat.text.think": {"qwenchat.chat.session": 3}, "qwenchat.chat.session": {}}
    assert layering_violations(graph) == [
        "qwenchat.text.think (leaf, rank 0) imports qwenchat.chat.session (chat, rank 6) "
        "at qwenchat/text/think.py:3"
    ]
    neighbours = {"qwenchat.chat.session": {"qwenchat.engines.llamacpp.engine": 9}}
    neighbours["qwenchat.engines.llamacpp.engine"] = {}
    assert len(layering_violations(neighbours)) == 1  # same rank, another group: not a dependency


def test_engines_import_only_the_contract():
    violations = engine_violations(import_graph())
    assert violations == [], "\n".join(violations)
    graph = {"qwenchat.engines.openai.http": {"qwenchat.engines.llamacpp.load": 1}}
    assert engine_violations(graph) == [
        "qwenchat.engines.openai.http imports qwenchat.engines.llamacpp.load (engines) "
        "at qwenchat/engines/openai/http.py:1"
    ]


def test_nothing_below_chat_imports_it():
    """Data flows one way: the session sits above the engines, the conversation and the features."""
    graph = import_graph()
    importers = {
        module: where(graph, module, target)
        for module, targets in graph.items()
        for target in targets
        if (layer(target) or ("",))[0] == "chat" and (layer(module) or ("", 0))[1] < 6
    }
    assert importers == {}, importers
