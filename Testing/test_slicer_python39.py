"""Everything the Slicer extension ships runs on Python 3.9 (Slicer 5.8 bundles 3.9.10).

CI runs a newer Python, so these checks read the code: the grammar of 3.9
(``ast.parse(feature_version=(3, 9))``: no ``match``, no ``except*``, no parenthesised
context managers), and what 3.9 lacks at run time although it parses: ``X | Y`` evaluated
(annotations of modules without ``from __future__ import annotations``, ``isinstance``,
aliases), ``zip(strict=)``, ``dataclass(kw_only=/slots=)``, names added to the standard library
later, and ``pydicom.pixels`` (pydicom 3; Slicer 5.8 and 5.10 bundle pydicom 2.4) outside a
``try``/``except ImportError``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The CMake lists install every file of the module folder into Slicer.
SHIPPED = sorted((ROOT / "StrokePerfusionSeg").rglob("*.py"))
#: Standard-library names newer than Python 3.9.
NEWER_NAMES = {
    "itertools": {"pairwise"},
    "typing": {"TypeAlias", "ParamSpec", "Concatenate", "TypeGuard", "Self", "Never", "LiteralString",
               "Required", "NotRequired", "assert_never", "reveal_type", "dataclass_transform", "Unpack",
               "TypeVarTuple", "override"},
    "datetime": {"UTC"},
    "enum": {"StrEnum", "verify", "ReprEnum"},
    "contextlib": {"chdir", "aclosing"},
    "hashlib": {"file_digest"},
    "dataclasses": {"KW_ONLY"},
}
NEWER_MODULES = {"tomllib", "zoneinfo._tzpath"}
TYPE_NAMES = {"None", "int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set", "frozenset", "type", "object"}


def _is_type_like(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name) and node.id in TYPE_NAMES:
        return True
    if isinstance(node, ast.Subscript):
        return _is_type_like(node.value)
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and (
        _is_type_like(node.left) or _is_type_like(node.right))


def _annotations(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                        arguments.vararg, arguments.kwarg]:
                if arg is not None and arg.annotation is not None:
                    yield arg.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def _in_import_error_try(tree: ast.AST, target: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(target is inner for stmt in node.body for inner in ast.walk(stmt)):
            names = {ast.unparse(handler.type) for handler in node.handlers if handler.type is not None}
            if names & {"ImportError", "ModuleNotFoundError"}:
                return True
    return False


def python39_problems(source: str) -> list[str]:
    """What in ``source`` would fail on Python 3.9, one line each (empty: nothing)."""
    try:
        tree = ast.parse(source, feature_version=(3, 9))
    except SyntaxError as error:
        return [f"line {error.lineno}: Python 3.9 cannot parse this ({error.msg})"]
    problems = []
    postponed = any(
        isinstance(node, ast.ImportFrom) and node.module == "__future__" and any(a.name == "annotations" for a in node.names)
        for node in tree.body
    )
    annotation_nodes = {id(inner) for annotation in _annotations(tree) for inner in ast.walk(annotation)}
    if not postponed:
        for annotation in _annotations(tree):
            if any(isinstance(inner, ast.BinOp) and isinstance(inner.op, ast.BitOr) for inner in ast.walk(annotation)):
                problems.append(f"line {annotation.lineno}: '{ast.unparse(annotation)}' is evaluated: use Optional/Union")
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in annotation_nodes
                and _is_type_like(node)):
            problems.append(f"line {line}: '{ast.unparse(node)}' needs Python 3.10: use Union/Optional or a tuple")
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            keywords = {keyword.arg for keyword in node.keywords}
            if name == "zip" and "strict" in keywords:
                problems.append(f"line {line}: zip(strict=) needs Python 3.10")
            if name in ("dataclass", "dataclasses.dataclass") and keywords & {"kw_only", "slots", "match_args"}:
                problems.append(f"line {line}: dataclass({', '.join(sorted(keywords))}) needs Python 3.10")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module in NEWER_MODULES:
                    problems.append(f"line {line}: module {module} is not in Python 3.9")
                if module.startswith("pydicom.pixels") and not _in_import_error_try(tree, node):
                    problems.append(f"line {line}: {module} is pydicom 3 only: fall back to pydicom 2.4 on ImportError")
            if isinstance(node, ast.ImportFrom):
                newer = NEWER_NAMES.get(node.module, set()) & {alias.name for alias in node.names}
                if newer:
                    problems.append(f"line {line}: {node.module}.{', '.join(sorted(newer))} is not in Python 3.9")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.attr in NEWER_NAMES.get(node.value.id, set()):
                problems.append(f"line {line}: {node.value.id}.{node.attr} is not in Python 3.9")
    return problems


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_file_runs_on_python39(path):
    assert python39_problems(path.read_text()) == []


@pytest.mark.parametrize("snippet, problem", [
    ("match x:\n    case 1:\n        pass\n", "cannot parse"),
    ("def f(a: int | None): pass\n", "is evaluated"),
    ("from __future__ import annotations\nAlias = int | None\n", "needs Python 3.10"),
    ("from __future__ import annotations\nok = isinstance(v, (int, float | str))\n", "needs Python 3.10"),
    ("pairs = zip(a, b, strict=True)\n", "zip(strict=)"),
    ("from dataclasses import dataclass\n@dataclass(slots=True)\nclass A:\n    x: int\n", "dataclass(slots)"),
    ("from itertools import pairwise\n", "itertools.pairwise"),
    ("import tomllib\n", "tomllib"),
    ("from pydicom.pixels import apply_color_lut\n", "pydicom 3 only"),
])
def test_python310_constructs_are_caught(snippet, problem):
    problems = python39_problems(snippet)
    assert len(problems) == 1 and problem in problems[0], problems


@pytest.mark.parametrize("snippet", [
    "from __future__ import annotations\ndef f(a: int | None) -> list[str] | None: pass\n",
    "flags = re.I | re.M\nmask = a | b\n",
    "try:\n    from pydicom.pixels import apply_color_lut\nexcept ImportError:\n    pass\n",
    "from typing import Optional, Union\ndef f(a: Optional[Union[int, str]]): pass\n",
])
def test_python39_constructs_pass(snippet):
    assert python39_problems(snippet) == []
