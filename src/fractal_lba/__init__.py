"""fractal-lba: signed Proof-of-Computation Summaries (PCS), the agent that builds them and
the verifier service that checks them. See README.md and SPEC.md."""

__version__ = "0.1.0"

__all__ = ["__version__"]
