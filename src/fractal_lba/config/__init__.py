"""Service configuration: one frozen :class:`Settings` built once from the environment.

Parsing is strict: a malformed value stops startup with a :class:`~fractal_lba.errors.ConfigError`
whose one-line message names the variable (and never echoes secret values). Secrets are held
in :class:`~fractal_lba.contract.Secret`.

Signing default (SPEC is silent): ``PCS_SIGN_ALG`` defaults to ``hmac``. When no HMAC key is
configured, the server uses a local key file ``<DATA_DIR>/hmac.key`` that it creates on first
start (random 32 bytes, mode 0600) and names in its startup log, so the embedded default is
signed end to end and agents on the same machine can sign with that file.
``PCS_SIGN_ALG=none`` turns signature checking off: an unsafe mode that logs a warning at
startup and on every request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, get_args

from fractal_lba.adversarial.vrf_gate import VrfMode
from fractal_lba.config.parser import EnvParser, parse_duration
from fractal_lba.contract import Secret
from fractal_lba.errors import ConfigError
from fractal_lba.privacy import policy as pii_policy
from fractal_lba.privacy.policy import PiiMode
from fractal_lba_client import contract as sdk_contract

__all__ = [
    "BACKENDS",
    "DEFAULT_POSTGRES_DSN",
    "DEFAULT_REDIS_URL",
    "LIMITER_BACKENDS",
    "LOCAL_HMAC_KEY_FILE",
    "LOG_LEVELS",
    "PROMETHEUS_MULTIPROC_ENV",
    "SIGN_ALGS",
    "SUPERVISOR_PID_ENV",
    "VRF_MODES",
    "AuditSettings",
    "Backend",
    "EnvParser",
    "LimiterBackend",
    "Settings",
    "SignAlg",
    "check_tenancy",
    "check_vrf",
    "export_to_workers",
    "failpoints_from_env",
    "named_variable",
    "parse_duration",
    "refuse_unimplemented",
]

SignAlg = Literal["hmac", "ed25519", "none"]
Backend = Literal["sqlite", "memory", "redis", "postgres"]
LimiterBackend = Literal["memory", "redis"]

BACKENDS: tuple[str, ...] = get_args(Backend)
"""The dedup backend names (the one list; ``stores.factory`` is keyed by ``Backend``)."""
SIGN_ALGS: tuple[str, ...] = get_args(SignAlg)
LIMITER_BACKENDS: tuple[str, ...] = get_args(LimiterBackend)
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
VRF_MODES: tuple[str, ...] = get_args(VrfMode)
LOCAL_HMAC_KEY_FILE = "hmac.key"
SUPERVISOR_PID_ENV = "FLK_SUPERVISOR_PID"
PROMETHEUS_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """The audit log's configuration (SPEC section 7): what the server's audit writer and
    ``flk worm`` need, parsed on its own so the offline tools do not depend on the rest."""

    data_dir: Path = Path("data")
    worm_base_dir: Path | None = None
    """Audit log directory (WORM_BASE_DIR); ``None`` means ``<data_dir>/audit``."""
    max_segment_size: int = 100 * 1024 * 1024
    """Segment rotation size (WORM_MAX_SEGMENT_SIZE)."""
    key_path: Path | None = None
    """Checkpoint signing key (AUDIT_KEY_PATH); ``None``: the default location."""

    @property
    def base_dir(self) -> Path:
        """Where the WORM audit log (worker 0's chain) lives."""
        return self.worm_base_dir if self.worm_base_dir is not None else self.data_dir / "audit"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuditSettings:
        """Parse the audit variables of ``env`` (default ``os.environ``); raise ConfigError."""
        return cls._parse(EnvParser(os.environ if env is None else env))

    @classmethod
    def _parse(cls, p: EnvParser) -> AuditSettings:
        return cls(
            data_dir=p.path("DATA_DIR") or Path("data"),
            worm_base_dir=p.path("WORM_BASE_DIR"),
            max_segment_size=p.size("WORM_MAX_SEGMENT_SIZE", 100 * 1024 * 1024),
            key_path=p.path("AUDIT_KEY_PATH"),
        )


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the verifier needs from its environment (SPEC section 10)."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    dedup_backend: Backend = "sqlite"
    redis_url: Secret = field(default_factory=lambda: Secret(DEFAULT_REDIS_URL.encode()))
    postgres_dsn: Secret = field(default_factory=lambda: Secret(DEFAULT_POSTGRES_DSN.encode()))
    dedup_namespace: str = "flk"
    """Prefix of dedup tables / keys, so several deployments can share one Redis/PostgreSQL."""
    dedup_purge_interval: float = 60.0
    """Seconds between looks for expired dedup records (the purge then runs until none is
    left, in bounded batches with pauses)."""
    dedup_purge_batch: int = 1000
    """Expired records deleted per purge statement / step."""
    dedup_memory_max_entries: int = 1_000_000
    """Bound of the memory dedup store; when full of live records new writes get 503."""
    token_rate: float = 0.0
    """Requests per second per tenant (token bucket, burst = one second); 0 = unlimited.
    In multi-tenant mode: the default for tenants that set no ``token_rate``."""
    daily_quota: int = 0
    """Admitted requests per tenant and UTC day (default for tenants); 0 = unlimited."""
    global_token_rate: float = 0.0
    """Requests per second over all tenants (burst = one second); 0 = unlimited."""
    rate_limit_backend: LimiterBackend = "memory"
    """``memory``: per process (quota counters persisted in the dedup backend);
    ``redis``: one atomic script per request at REDIS_URL, exact across replicas."""
    sign_alg: SignAlg = "hmac"
    hmac_keys: tuple[Secret, ...] = ()
    """Active HMAC keys (PCS_HMAC_KEYS, then PCS_HMAC_KEY); empty = local key file."""
    ed25519_pub_b64: tuple[str, ...] = ()
    hmac_accept_legacy_digest: bool = False
    metrics_user: str | None = None
    metrics_pass: Secret | None = None
    admin_token: Secret | None = None
    audit: AuditSettings = field(default_factory=AuditSettings)
    """Audit log settings (WORM_BASE_DIR, WORM_MAX_SEGMENT_SIZE, AUDIT_*)."""
    wal_segment_size: int = 64 * 1024 * 1024
    wal_retention: float = 7 * 86400.0
    """Finished inbox WAL segments older than this are compacted by the running server."""
    strict_mode: bool = False
    region_id: str = "local"
    log_level: str = "INFO"
    request_timeout: float = 5.0
    multi_tenant: bool = False
    tenants: Secret | None = None
    """``TENANTS="id:alg:key,..."`` as given (it holds HMAC keys: never in a repr)."""
    tenants_file: Path | None = None
    vrf_enabled: bool = False
    """Every tenant must carry a valid ECVRF proof (SPEC section 8; step 6)."""
    vrf_mode: VrfMode = "enforce"
    min_pcs_version: str = "0.1"
    """MIN_PCS_VERSION: oldest PCS version accepted (default of tenants that set none)."""
    """``enforce`` (401) or ``report_only``: the default of tenants that set no ``vrf.mode``."""
    vrf_public_key: bytes | None = None
    """Single-tenant VRF public key (VRF_PUBLIC_KEY); ``None`` = the local ``vrf.key``."""
    vrf_verify_threads: int = 0
    """Threads per worker that verify VRF proofs off the event loop; 0 = inline (default:
    on a busy 2-core host the GIL hand-offs cost ~200 us CPU per request more than they
    gain, bench/vrf_ab.py). libsodium releases the GIL, so spare cores can take proofs."""
    pii_scan_mode: PiiMode = "off"
    """Default PII gate mode for tenants without a ``pii`` table (SPEC section 8)."""
    pii_report_only: bool = False
    pii_phone_regions: tuple[str, ...] = ("US",)
    pii_wal_retention: float = 3600.0
    """Block/redact: a raw body with PII leaves the inbox WAL this long after its outcome."""
    pii_hash_key: Secret | None = None
    """Key of the keyed-hash tokens (``None``: ``DATA_DIR/keys/pii_hash.key``)."""
    # Accepted and validated for a later issue; enabling it is refused until implemented.
    policy_registry: Path | None = None
    # Process wiring and test hooks: set by ``flk serve`` for its workers or by tests, never
    # needed in a deployment's own configuration.
    supervisor_pid: int | None = None
    """``FLK_SUPERVISOR_PID``: the ``flk serve --workers N`` supervisor (rolling restarts)."""
    prometheus_multiproc_dir: Path | None = None
    """``PROMETHEUS_MULTIPROC_DIR``: several workers share their metrics through files here."""
    bench_null_endpoint: bool = False
    """``FLK_BENCH_NULL_ENDPOINT``: ``POST /v1/bench/null[-starlette]`` answer a fixed 200."""

    def __post_init__(self) -> None:
        if self.audit.data_dir != self.data_dir:  # one DATA_DIR, also when built by hand
            object.__setattr__(self, "audit", replace(self.audit, data_dir=self.data_dir))

    @property
    def audit_dir(self) -> Path:
        """Where the WORM audit log lives."""
        return self.audit.base_dir

    @property
    def worm_max_segment_size(self) -> int:
        """Audit segment rotation size (WORM_MAX_SEGMENT_SIZE)."""
        return self.audit.max_segment_size

    @property
    def wal_root(self) -> Path:
        """Parent of the per-worker inbox WAL directories."""
        return self.data_dir / "wal"

    @property
    def local_hmac_key_path(self) -> Path:
        """The generated key file used when ``PCS_SIGN_ALG=hmac`` and no key is configured."""
        return self.data_dir / LOCAL_HMAC_KEY_FILE

    @property
    def local_vrf_key_path(self) -> Path:
        """The generated VRF key used when ``VRF_ENABLED`` and no ``VRF_PUBLIC_KEY`` is set."""
        return self.data_dir / "vrf.key"

    @property
    def store_op_timeout(self) -> float:
        """Per-operation dedup store timeout: a lookup and a write fit in REQUEST_TIMEOUT."""
        return max(0.05, min(2.0, self.request_timeout / 2.5))

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, overrides: Mapping[str, str] | None = None
    ) -> Settings:
        """Parse ``env`` (default ``os.environ``) with ``overrides`` on top (command-line
        options); raise ConfigError naming the variable."""
        e = os.environ if env is None else env
        p = EnvParser({**e, **overrides} if overrides else e)
        sign_alg = p.choice("PCS_SIGN_ALG", SIGN_ALGS, "hmac")
        hmac_keys = p.hmac_keys()
        ed_keys = p.ed25519_keys()
        if sign_alg == "ed25519" and not ed_keys:
            raise ConfigError("PCS_ED25519_PUB_B64 is required when PCS_SIGN_ALG=ed25519")
        metrics_user = p.text("METRICS_USER")
        metrics_pass = p.secret("METRICS_PASS")
        if (metrics_user is None) != (metrics_pass is None):
            raise ConfigError("METRICS_USER and METRICS_PASS must be set together")
        settings = cls(
            host=p.text("HOST") or "127.0.0.1",
            port=p.integer("PORT", 8080, lo=0, hi=65535),
            data_dir=p.path("DATA_DIR") or Path("data"),
            dedup_backend=p.choice("DEDUP_BACKEND", BACKENDS, "sqlite"),  # type: ignore[arg-type]
            redis_url=p.secret("REDIS_URL") or Secret(DEFAULT_REDIS_URL.encode()),
            postgres_dsn=p.secret("POSTGRES_DSN") or Secret(DEFAULT_POSTGRES_DSN.encode()),
            dedup_namespace=p.namespace("DEDUP_NAMESPACE"),
            dedup_purge_interval=p.duration("DEDUP_PURGE_INTERVAL", 60.0, positive=True),
            dedup_purge_batch=p.integer("DEDUP_PURGE_BATCH", 1000, lo=1, hi=100_000),
            dedup_memory_max_entries=p.integer(
                "DEDUP_MEMORY_MAX_ENTRIES", 1_000_000, lo=1, hi=2**40
            ),
            token_rate=p.number("TOKEN_RATE", 0.0, lo=0.0),
            daily_quota=p.integer("DAILY_QUOTA", 0, lo=0, hi=2**53),
            global_token_rate=p.number("GLOBAL_TOKEN_RATE", 0.0, lo=0.0),
            rate_limit_backend=p.choice(  # type: ignore[arg-type]
                "RATE_LIMIT_BACKEND", LIMITER_BACKENDS, "memory"
            ),
            sign_alg=sign_alg,  # type: ignore[arg-type]
            hmac_keys=hmac_keys,
            ed25519_pub_b64=ed_keys,
            hmac_accept_legacy_digest=p.boolean("PCS_HMAC_ACCEPT_LEGACY_DIGEST", False),
            metrics_user=metrics_user,
            metrics_pass=metrics_pass,
            admin_token=p.secret("ADMIN_TOKEN"),
            audit=AuditSettings._parse(p),
            wal_segment_size=p.size("WAL_SEGMENT_SIZE", 64 * 1024 * 1024),
            wal_retention=p.duration("WAL_RETENTION", 7 * 86400.0),
            strict_mode=p.boolean("STRICT_MODE", False),
            region_id=p.text("REGION_ID") or "local",
            log_level=p.choice("LOG_LEVEL", LOG_LEVELS, "INFO", upper=True),
            request_timeout=p.number("REQUEST_TIMEOUT", 5.0, lo=0.1, hi=600.0),
            multi_tenant=p.boolean("MULTI_TENANT", False),
            tenants=p.tenants(),
            tenants_file=p.path("TENANTS_FILE"),
            vrf_enabled=p.boolean("VRF_ENABLED", False),
            vrf_mode=p.choice("VRF_MODE", VRF_MODES, "enforce"),  # type: ignore[arg-type]
            min_pcs_version=p.choice("MIN_PCS_VERSION", sdk_contract.PCS_VERSIONS, "0.1"),
            vrf_public_key=p.vrf_public_key(),
            vrf_verify_threads=p.integer("VRF_VERIFY_THREADS", 0, lo=0, hi=64),
            pii_scan_mode=p.choice("PII_SCAN_MODE", pii_policy.PII_MODES, "off"),  # type: ignore[arg-type]
            pii_report_only=p.boolean("PII_REPORT_ONLY", False),
            pii_phone_regions=p.phone_regions("PII_PHONE_REGIONS"),
            pii_wal_retention=p.duration("PII_WAL_RETENTION", 3600.0),
            pii_hash_key=p.secret_or_file("PII_HASH_KEY"),
            policy_registry=p.path("POLICY_REGISTRY"),
            supervisor_pid=p.optional_integer(SUPERVISOR_PID_ENV, lo=1, hi=2**31),
            prometheus_multiproc_dir=p.path(PROMETHEUS_MULTIPROC_ENV),
            bench_null_endpoint=p.boolean("FLK_BENCH_NULL_ENDPOINT", False),
        )
        check_tenancy(settings)
        check_vrf(settings)
        refuse_unimplemented(settings)
        return settings


def export_to_workers(
    overrides: Mapping[str, str], *, prometheus_multiproc_dir: Path, supervisor_pid: int
) -> None:
    """Hand the configuration to ``flk serve``'s worker processes, which build their own
    Settings from the environment: the command-line ``overrides``, the shared metrics
    directory (read by prometheus_client itself) and the supervisor's PID.

    The one writer of the environment, next to its one reader (:meth:`Settings.from_env`).
    """
    os.environ.update(overrides)
    os.environ[PROMETHEUS_MULTIPROC_ENV] = str(prometheus_multiproc_dir)
    os.environ[SUPERVISOR_PID_ENV] = str(supervisor_pid)


def failpoints_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """``FLK_FAILPOINTS`` (test-only fault injection, :mod:`fractal_lba.failpoints`), checked.

    Read here so that the settings loader stays the one reader of the environment; every
    process entry point (server worker, agent CLI) arms the failpoints with it.
    """
    from fractal_lba import failpoints

    spec = (os.environ if env is None else env).get(failpoints.ENV) or None
    failpoints.parse(spec or "")
    return spec


def named_variable(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The variable an ``env:NAME`` secret reference names (the agent's ``--key env:VAR``).

    Read here so that the settings loader stays the one reader of the environment.
    """
    return (os.environ if env is None else env).get(name)


def check_tenancy(s: Settings) -> None:
    """Multi-tenant mode needs tenants; tenants without it would be silently ignored."""
    if s.multi_tenant and s.tenants is None and s.tenants_file is None:
        raise ConfigError("MULTI_TENANT=true needs TENANTS or TENANTS_FILE")
    if not s.multi_tenant:
        for name, on in (("TENANTS", s.tenants is not None), ("TENANTS_FILE", s.tenants_file)):
            if on:
                raise ConfigError(
                    f"{name} is only used with MULTI_TENANT=true; set it or unset {name}"
                )


def check_vrf(s: Settings) -> None:
    """VRF_PUBLIC_KEY is the single tenant's key and only means something with VRF_ENABLED."""
    if s.vrf_public_key is not None:
        if s.multi_tenant:
            raise ConfigError(
                "VRF_PUBLIC_KEY is only used in single-tenant mode; with MULTI_TENANT=true give "
                "each tenant vrf.public_key in TENANTS_FILE"
            )
        if not s.vrf_enabled:
            raise ConfigError("VRF_PUBLIC_KEY is set but VRF_ENABLED is not true")


def refuse_unimplemented(s: Settings) -> None:
    """Fail closed on features this version accepts by name but does not implement yet.

    An operator who turns on a feature must not get a server that silently ignores it.
    """
    wanted = [
        ("POLICY_REGISTRY", s.policy_registry is not None),
    ]
    for name, on in wanted:
        if on:
            raise ConfigError(f"{name} is not supported by this version of the verifier yet")
