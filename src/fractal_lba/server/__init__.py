"""The verifier service: ASGI app factory, submit path (admission, pipeline), lifecycle, cold
routes, inbox WAL, replay, metrics, logs."""

from fractal_lba.server.app import SUBMIT_PATH, VerifierApp
from fractal_lba.server.factory import create_app

__all__ = ["SUBMIT_PATH", "VerifierApp", "create_app"]
