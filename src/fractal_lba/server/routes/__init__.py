"""The cold HTTP endpoints (everything but ``POST /v1/pcs/submit``): one module per route group.

Each module has ``routes(app) -> list[BaseRoute]`` (Starlette routes whose handlers read the
app's parts at request time: the audit log, for one, is only chosen at startup);
:data:`ROUTE_GROUPS` lists them and :class:`~fractal_lba.server.app.VerifierApp` mounts them
all. A new group (a read API, the policy endpoints) is a module here plus one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from fractal_lba.server.routes import admin, audit, bench, ops

if TYPE_CHECKING:
    from fractal_lba.server.app import VerifierApp

__all__ = ["ROUTE_GROUPS", "RouteGroup", "mount"]

RouteGroup = Callable[["VerifierApp"], Sequence[BaseRoute]]

ROUTE_GROUPS: tuple[RouteGroup, ...] = (ops.routes, admin.routes, audit.routes, bench.routes)
"""``/health`` ``/ready`` ``/metrics``; tenant admin; audit queries; the benchmark's null."""


def mount(app: VerifierApp) -> list[BaseRoute]:
    """Every route of every group, for the app's Starlette router."""
    return [route for group in ROUTE_GROUPS for route in group(app)]
