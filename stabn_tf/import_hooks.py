"""Running our code around the first import of another package, whoever imports it.

`import stabn_tf` loads no TensorFlow, yet two things must happen when TensorFlow or Keras
is loaded later by any module: TensorFlow's start-up lines are caught (`stabn_tf.quiet`),
and this project's Keras objects are registered so `keras.saving.load_model` finds them
(`stabn_tf/__init__.py`). `around_import(name, run)` does both the same way: a finder for
that one top-level name hands the import system the usual spec with a loader that calls
`run(load)`, where `load()` executes the module. The finder steps aside once the module
loads; a mere `importlib.util.find_spec(name)` (TensorFlow asks for Keras's spec without
importing it) leaves it in place. TensorFlow-free.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable

#: `run(load)`: does what it must around `load()`, which executes the imported module.
Around = Callable[[Callable[[], None]], None]


def around_import(name: str, run: Around) -> None:
    """Calls `run(load)` when top-level module `name` is first imported; nothing when it
    already is, or when the same `run` already waits for it."""
    if name in sys.modules:
        return
    if not any(isinstance(f, _Finder) and (f.name, f.run) == (name, run) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(name, run))


class _Finder(importlib.abc.MetaPathFinder):
    """Finds `name` as the other finders do, with a loader that goes through `run`."""

    def __init__(self, name: str, run: Around):
        self.name, self.run, self.finding = name, run, False

    def find_spec(self, name, path=None, target=None):
        if name != self.name or self.finding:
            return None
        self.finding = True  # the search below meets this finder again
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, self)
        return spec


class _Loader(importlib.abc.Loader):
    """`loader`, its module executed inside the finder's `run`."""

    def __init__(self, loader, finder: _Finder):
        self.loader, self.finder = loader, finder

    def __getattr__(self, name):  # resources, source, ...: the real loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        self.finder.run(lambda: self.loader.exec_module(module))


def lazy_names(package: str, api: dict[str, str]) -> Callable[[str], object]:
    """A package's module `__getattr__` that imports its public names (`api`: name → the
    module defining it) and its submodules on first use, so importing one light submodule
    (e.g. the converter's lock) does not import the package's heavy ones."""
    def __getattr__(name: str) -> object:  # noqa: N807 (the module hook's name)
        module = sys.modules[package]
        if name in api:
            value = getattr(importlib.import_module(api[name]), name)
        else:  # a submodule, as when the package imported them all
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(module, name, value)
        return value
    return __getattr__
