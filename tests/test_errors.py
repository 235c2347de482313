"""The exception tree drawn in the docstring of ``fractal_lba.errors`` is the real one: every
public subclass of FlkError, under its real parent, named with its real package."""

from __future__ import annotations

import importlib
import pkgutil
import re

import fractal_lba
from fractal_lba import errors
from fractal_lba.errors import FlkError

Tree = dict[str, tuple[str, str]]
"""class name -> (parent class name, package under fractal_lba; "" for fractal_lba.errors)."""

_LINE = re.compile(r"^    ((?:[│ ]   )*)(?:[├└]── )?([A-Za-z_][A-Za-z0-9_.]*)")


def package_of(cls: type) -> str:
    parts = cls.__module__.split(".")
    return "" if parts[1:] == ["errors"] else parts[1]


def real_tree() -> Tree:
    for mod in pkgutil.walk_packages(fractal_lba.__path__, "fractal_lba."):
        importlib.import_module(mod.name)  # every subclass is defined once its module loaded
    out: Tree = {}

    def walk(cls: type) -> None:
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("fractal_lba.") and not sub.__name__.startswith("_"):
                parent = next(b for b in sub.__bases__ if issubclass(b, FlkError))
                assert sub.__name__ not in out, f"two error classes named {sub.__name__}"
                out[sub.__name__] = (parent.__name__, package_of(sub))
            walk(sub)

    walk(FlkError)
    return out


def drawn_tree() -> Tree:
    doc = errors.__doc__ or ""
    lines = doc.split("::", 1)[1].lstrip("\n").splitlines()
    path: list[tuple[str, str]] = []  # (name, package) from the root down
    out: Tree = {}
    for line in lines:
        m = _LINE.match(line)
        if m is None:
            break
        depth = len(m.group(1)) // 4 + (1 if "──" in line else 0)
        pkg, _, name = m.group(2).rpartition(".")
        del path[depth:]
        if depth == 0:
            assert name == "FlkError", line
            path.append((name, ""))
            continue
        parent, parent_pkg = path[depth - 1]
        assert name not in out, f"{name} drawn twice"
        out[name] = (parent, pkg or parent_pkg)
        path.append((name, pkg or parent_pkg))
    return out


def test_the_drawn_tree_is_the_real_tree() -> None:
    drawn, real = drawn_tree(), real_tree()
    assert set(drawn) - set(real) == set(), "drawn but not defined"
    assert set(real) - set(drawn) == set(), "defined but not drawn in errors.py"
    assert drawn == real


def test_every_package_root_is_drawn() -> None:
    roots = {name for name, (parent, _) in drawn_tree().items() if parent == "FlkError"}
    assert {
        "ConfigError", "ContractError", "SignalError", "ProofError", "PolicyError",
        "TenancyError", "WalError", "StoreError", "AgentError", "AuditError",
    } <= roots  # fmt: skip
