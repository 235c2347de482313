"""Client-side TLS (SPEC section 11) against a real verifier process behind uvicorn's TLS
(a CA, server and client certificates made in the test): the server certificate is verified,
an unknown CA is refused, and a client certificate is presented for mutual TLS.

Server-side TLS options of ``flk serve`` are the security work's; this test starts uvicorn
with its own ssl options on the verifier's factory so the client side is proven now.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_helpers import HMAC_KEY, free_port, wait_until

from fractal_lba_client import APIConnectionError, FractalLBAClient, TLSConfig, ValidationError

NOW = dt.datetime.now(dt.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(path: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5)).not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    _write(path, key, cert)
    return key, cert


def _leaf(
    path: Path, ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], name: str, server: bool
) -> None:
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca[1].subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5)).not_valid_after(NOW + dt.timedelta(days=1))
    )  # fmt: skip
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    _write(path, key, builder.sign(ca[0], hashes.SHA256()))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ca = _ca(d / "ca", "test CA")
    _ca(d / "other-ca", "some other CA")
    _leaf(d / "server", ca, "verifier", server=True)
    _leaf(d / "client", ca, "agent-1", server=False)
    return d


@pytest.fixture(scope="module")
def tls_server(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    data = tmp_path_factory.mktemp("tls") / "data"
    env = {**os.environ, "DATA_DIR": str(data), "PCS_HMAC_KEY": HMAC_KEY}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = open(data.parent / "uvicorn.log", "wb")  # noqa: SIM115 -- the child owns it
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "--factory",
            "fractal_lba.server.factory:app_from_env", "--host", "127.0.0.1", "--port", str(port),
            "--ssl-keyfile", str(pki / "server.key"), "--ssl-certfile", str(pki / "server.pem"),
            "--ssl-ca-certs", str(pki / "ca.pem"), "--ssl-cert-reqs", "2",  # CERT_REQUIRED
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    log.close()
    url = f"https://127.0.0.1:{port}"
    client_tls = TLSConfig(pki / "ca.pem", pki / "client.pem", pki / "client.key").ssl_context()

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError((data.parent / "uvicorn.log").read_text()[-2000:])
        try:
            return httpx.get(url + "/health", verify=client_tls, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=30, what="TLS verifier /health")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


RECORD = {
    "shard_id": "tls", "epoch": 1, "seed": 42, "scales": [2, 4, 8, 16, 32],
    "N_j": {"2": 2, "4": 4, "8": 8, "16": 16, "32": 32}, "coh_star": 0.75,
    "v_star": [0.0, 1.0, 0.0], "D_hat": 1.0, "r": 0.5, "regime": "sticky", "budget": 0.4,
    "merkle_root": "cd" * 32,
}  # fmt: skip


def test_mutual_tls_submit(tls_server: str, pki: Path) -> None:
    tls = TLSConfig(pki / "ca.pem", pki / "client.pem", pki / "client.key")
    with FractalLBAClient(tls_server, signing_key=HMAC_KEY, tls=tls) as client:
        assert client.health_check().status == "ok"
        assert client.submit_pcs(RECORD).accepted


def test_a_server_signed_by_another_ca_is_refused(tls_server: str, pki: Path) -> None:
    tls = TLSConfig(pki / "other-ca.pem", pki / "client.pem", pki / "client.key")
    client = FractalLBAClient(tls_server, signing_key=HMAC_KEY, tls=tls, max_retries=0)
    with client, pytest.raises(APIConnectionError):
        client.health_check()


def test_without_a_client_certificate_the_handshake_fails(tls_server: str, pki: Path) -> None:
    with (
        FractalLBAClient(
            tls_server, signing_key=HMAC_KEY, tls=TLSConfig(pki / "ca.pem"), max_retries=0
        ) as client,
        pytest.raises(APIConnectionError),
    ):
        client.health_check()


def test_unreadable_tls_files_name_the_option(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as exc:
        FractalLBAClient("https://x", tls=TLSConfig(tmp_path / "missing.pem"))
    assert exc.value.field == "tls.ca_file"
    with pytest.raises(ValidationError) as exc:
        FractalLBAClient("https://x", tls=TLSConfig(client_cert=tmp_path / "missing.pem"))
    assert exc.value.field == "tls.client_cert"
