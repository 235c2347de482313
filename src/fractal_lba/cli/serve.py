"""``flk serve``: run the verifier service (uvicorn with uvloop + httptools).

Options override the environment variables of the same meaning (SPEC section 10); the app
itself is always built from one frozen :class:`~fractal_lba.config.Settings`.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import click

from fractal_lba.config import BACKENDS, Settings, export_to_workers
from fractal_lba.errors import ConfigError

MULTIPROC_DIRNAME = "prometheus-multiproc"


@click.command()
@click.option("--host", help="Bind address [env HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="TCP port [env PORT, default 8080].")
@click.option("--data-dir", type=click.Path(path_type=Path), help="[env DATA_DIR, default ./data]")
@click.option(
    "--dedup-backend",
    type=click.Choice(BACKENDS),
    help="[env DEDUP_BACKEND, default sqlite]",
)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--log-level", help="[env LOG_LEVEL, default INFO]")
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    dedup_backend: str | None,
    workers: int,
    log_level: str | None,
) -> None:
    """Run the PCS verifier (POST /v1/pcs/submit, /health, /ready, /metrics)."""
    overrides = {
        name: value
        for name, value in {
            "HOST": host,
            "PORT": None if port is None else str(port),
            "DATA_DIR": None if data_dir is None else str(data_dir),
            "DEDUP_BACKEND": dedup_backend,
            "LOG_LEVEL": log_level,
        }.items()
        if value is not None
    }
    settings = Settings.from_env(overrides=overrides)
    if workers > 1 and settings.dedup_backend == "memory":
        raise ConfigError(
            "DEDUP_BACKEND=memory keeps outcomes inside one process; it cannot be used with "
            "--workers > 1 (use sqlite, redis or postgres)"
        )

    import uvicorn

    from fractal_lba.policy import default_policy
    from fractal_lba.server.factory import app_from_env
    from fractal_lba.server.logs import LOGGER_NAME, configure_logging
    from fractal_lba.tenancy import build_resolver

    configure_logging(settings.log_level)
    # The app loads its tenants at startup; check them here once, so that a bad tenants
    # file or key file ends the command with one line and exit status 2.
    build_resolver(settings, default_policy())
    logging.getLogger(LOGGER_NAME).info(
        "serving on http://%s:%d with %d worker(s), dedup backend %s, data in %s",
        settings.host, settings.port, workers, settings.dedup_backend, settings.data_dir,
    )  # fmt: skip
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    common = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "log_config": None,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
    }
    if workers == 1:
        uvicorn.run(app_from_env(settings), **common)  # type: ignore[arg-type]
        return
    # Workers are separate processes that build their Settings from the environment. A
    # worker that reloads its tenants asks this supervisor for a rolling restart (SIGHUP),
    # so every worker picks up the new file.
    mp_dir = settings.data_dir / MULTIPROC_DIRNAME
    shutil.rmtree(mp_dir, ignore_errors=True)
    mp_dir.mkdir(parents=True)
    export_to_workers(overrides, prometheus_multiproc_dir=mp_dir, supervisor_pid=os.getpid())
    app_from_env(settings)  # fail here, once, on a configuration problem
    uvicorn.run(
        "fractal_lba.server.factory:app_from_env",
        factory=True,
        workers=workers,
        **common,  # type: ignore[arg-type]
    )
