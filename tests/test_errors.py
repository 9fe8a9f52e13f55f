"""One error rule: every error class of the project is a `StabnError` (so `Command` prints
it as one line), and no code re-raises a project error as another with the same text."""

import ast
import importlib
import pathlib
import types

import pytest

from stabn_tf.errors import StabnError

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "stabn_tf"


def _modules() -> dict[str, ast.Module]:
    trees = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        trees[name] = ast.parse(path.read_text(encoding="utf-8"))
    return trees


MODULES = _modules()


def _error_classes() -> list[tuple[str, type]]:
    found = []
    for name, tree in MODULES.items():
        # A private class (`_Incomplete`) is a signal inside its module, never raised out.
        classes = [node.name for node in tree.body
                   if isinstance(node, ast.ClassDef) and not node.name.startswith("_")]
        if not classes or name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        found += [(f"{name}.{c}", getattr(module, c)) for c in classes
                  if isinstance(getattr(module, c), type)
                  and issubclass(getattr(module, c), Exception)]
    return found


def test_every_error_class_is_a_stabn_error():
    errors = _error_classes()
    assert len(errors) > 15  # the scan finds them
    assert [name for name, cls in errors if not issubclass(cls, StabnError)] == []


def _same_text_rewraps(name: str, tree: ast.Module) -> list[str]:
    """`except <project error> as e: raise X(str(e))` in module `name`."""
    module, found = None, []
    for handler in ast.walk(tree):
        if not (isinstance(handler, ast.ExceptHandler) and handler.name):
            continue
        for node in ast.walk(handler):
            call = node.exc if isinstance(node, ast.Raise) else None
            if not (isinstance(call, ast.Call) and len(call.args) == 1 and not call.keywords):
                continue
            arg = call.args[0]
            if not (isinstance(arg, ast.Call) and ast.unparse(arg) == f"str({handler.name})"):
                continue
            module = module or importlib.import_module(name)
            caught = [module.__dict__.get(n.id) for n in ast.walk(handler.type)
                      if isinstance(n, ast.Name)]
            if any(isinstance(c, type) and issubclass(c, StabnError) for c in caught):
                found.append(f"{name}:{node.lineno}")
    return found


def test_no_project_error_is_re_raised_with_the_same_text():
    assert [line for name, tree in MODULES.items() if not name.endswith("__main__")
            for line in _same_text_rewraps(name, tree)] == []


def test_the_rewrap_check_finds_one():
    tree = ast.parse("try:\n    pass\nexcept StabnError as e:\n    raise KeyError(str(e))\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(importlib, "import_module",
                      lambda name: types.SimpleNamespace(StabnError=StabnError))
        assert _same_text_rewraps("fake", tree) == ["fake:4"]
