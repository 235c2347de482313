"""One named step of the submit path (SPEC section 4), as data.

The submit path is two ordered tuples of :class:`Step`: ``ADMISSION_STEPS`` (steps 1-2, live
requests only, :mod:`fractal_lba.server.admission`) and ``PIPELINE_STEPS`` (steps 3-10, live
and replayed requests, :mod:`fractal_lba.server.pipeline`); ``SUBMIT_PATH`` in
:mod:`fractal_lba.server.submit` is both, and a test holds it against SPEC section 4.

Adding a step (a gate of a later feature) is a step function in the feature's own module and
one entry in the tuple at its SPEC position. A step returns ``None`` to go on, or the
:class:`~fractal_lba.server.submission.Reply` that ends the request.

Cost: the runners loop over plain tuples of functions. A pipeline step with ``applies`` is
left out, per tenant, when the tenant's context is built (for example the VRF gate for
tenants that do not require VRF, the PII gate where scanning is off), so a step that does
not apply to a tenant costs that tenant's requests nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from fractal_lba.server.submission import TenantContext

F = TypeVar("F", bound=Callable[..., object])


def always(ctx: TenantContext) -> bool:
    """``Step.applies`` of a step that runs for every tenant."""
    return True


@dataclass(frozen=True, slots=True)
class Step(Generic[F]):
    """A step of the submit path: its SPEC section 4 item, its name, and what runs."""

    spec: str
    """The SPEC section 4 item it implements: ``"1"`` .. ``"10"``, ``"5b"``."""
    name: str
    """Words of that SPEC item, ``_``-joined (``signature_verification``, ``dedup_write``)."""
    run: F
    applies: Callable[[TenantContext], bool] = always
    """Steps 3-10: whether the step runs for a tenant, from its prepared context (decided
    once per tenant when the tenants are loaded or reloaded)."""
