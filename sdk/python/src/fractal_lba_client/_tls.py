"""Client-side TLS (SPEC section 11): verify the server's certificate, optionally present one."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from fractal_lba_client._errors import ValidationError


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """``ca_file``: CA bundle that signs the server's certificate (default: the system's).
    ``client_cert``/``client_key``: PEM files presented for mutual TLS. Verification of the
    server certificate and host name is always on."""

    ca_file: str | Path | None = None
    client_cert: str | Path | None = None
    client_key: str | Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """The verifying context (ValidationError naming the option when a file is unusable)."""
        try:
            ctx = ssl.create_default_context(
                cafile=None if self.ca_file is None else str(self.ca_file)
            )
        except (OSError, ssl.SSLError):
            raise ValidationError("tls.ca_file", "cannot be read as a PEM CA bundle") from None
        if self.client_key is not None and self.client_cert is None:
            raise ValidationError("tls.client_cert", "is required with tls.client_key")
        if self.client_cert is not None:
            try:
                ctx.load_cert_chain(
                    str(self.client_cert),
                    None if self.client_key is None else str(self.client_key),
                )
            except (OSError, ssl.SSLError):
                raise ValidationError(
                    "tls.client_cert", "cannot be loaded with its key (PEM files)"
                ) from None
        return ctx
