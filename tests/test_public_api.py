"""The public names of ``fractal_lba`` do not change by accident.

Every package declares its public names in a sorted ``__all__``; nothing else public is
imported into a package's ``__init__``; and the union is pinned in
``tests/data/public-api.json``. A deliberate change updates that file: run this module with
``FLK_WRITE_PUBLIC_API=1`` and review the diff.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import types
from pathlib import Path

import fractal_lba

SNAPSHOT = Path(__file__).resolve().parent / "data" / "public-api.json"
_NOT_NAMES = frozenset({"annotations", "TYPE_CHECKING"})  # from __future__ / typing


def packages() -> list[types.ModuleType]:
    names = ["fractal_lba"] + [
        m.name for m in pkgutil.walk_packages(fractal_lba.__path__, "fractal_lba.") if m.ispkg
    ]
    return [importlib.import_module(n) for n in names]


def public_api() -> dict[str, list[str]]:
    return {p.__name__: list(getattr(p, "__all__", ["<no __all__>"])) for p in packages()}


def test_every_package_declares_an_all_of_names_it_has() -> None:
    for pkg in packages():
        names = getattr(pkg, "__all__", None)
        assert names is not None, f"{pkg.__name__} has no __all__"
        assert [n for n in names if not hasattr(pkg, n)] == [], pkg.__name__


def _own(pkg: types.ModuleType, value: object) -> bool:
    """Defined by this package (a class or function of it, or a constant), not imported."""
    if isinstance(value, types.ModuleType):
        return False
    module = getattr(value, "__module__", None)
    return module is None or module == pkg.__name__ or module.startswith(pkg.__name__ + ".")


def test_nothing_is_public_by_accident() -> None:
    """A name a package defines (or takes from its own modules) that is not in its
    ``__all__`` is a leak: list it or give it a leading ``_``."""
    for pkg in packages():
        public = {
            k for k, v in vars(pkg).items()
            if not k.startswith("_") and k not in _NOT_NAMES and _own(pkg, v)
        }  # fmt: skip
        assert public - set(pkg.__all__) == set(), pkg.__name__


def test_public_names_are_the_pinned_ones() -> None:
    api = public_api()
    if os.environ.get("FLK_WRITE_PUBLIC_API") == "1":
        SNAPSHOT.write_text(json.dumps(api, indent=1, sort_keys=True) + "\n", "utf-8")
    pinned = json.loads(SNAPSHOT.read_text("utf-8"))
    for pkg in sorted(set(api) | set(pinned)):
        now, then = set(api.get(pkg, [])), set(pinned.get(pkg, []))
        assert (sorted(now - then), sorted(then - now)) == ([], []), (
            f"{pkg}: (added, removed) public names; if deliberate, rewrite {SNAPSHOT.name}"
        )
