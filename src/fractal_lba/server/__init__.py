"""The verifier service: ASGI app factory, submit pipeline, inbox WAL, replay, metrics, logs."""

from fractal_lba.server.app import SUBMIT_PATH, VerifierApp, create_app

__all__ = ["SUBMIT_PATH", "VerifierApp", "create_app"]
