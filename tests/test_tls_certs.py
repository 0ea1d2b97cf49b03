"""badsmtp.tls: generated certificates, user-supplied files, and real loopback handshakes.

Every positive check has a negative twin, so a test that cannot fail is noticed.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from helpers import ROOT

from badsmtp import tls
from badsmtp.tls import TLSProvider, TLSSetupError

OPENSSL = "/usr/bin/openssl"
TIMEOUT = 5.0
LOOPBACK_IPS = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}


def load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def san(cert: x509.Certificate) -> tuple[list[str], Sequence[object]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName), ext.get_values_for_type(x509.IPAddress)


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@pytest.fixture(scope="module")
def provider() -> TLSProvider:
    return TLSProvider()


# --- import cost ---------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_and_construction_do_not_import_cryptography() -> None:
    result = run_python(
        "import badsmtp.tls, sys\n"
        "assert 'cryptography' not in sys.modules, 'import'\n"
        "p = badsmtp.tls.TLSProvider()\n"
        "p.server_context()\n"
        "assert 'cryptography' not in sys.modules, 'construction'\n"
    )
    assert result.returncode == 0, result.stderr


def test_first_certificate_imports_cryptography() -> None:
    # Twin: the subprocess check above can see cryptography being imported.
    result = run_python(
        "import badsmtp.tls, sys\n"
        "badsmtp.tls.TLSProvider().certificate_pem()\n"
        "assert 'cryptography' in sys.modules\n"
    )
    assert result.returncode == 0, result.stderr


# --- certificate fields ----------------------------------------------------------------


def test_subject_equals_issuer_and_is_self_signed(provider: TLSProvider) -> None:
    cert = load(provider.certificate_pem())
    expected = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Test"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Test"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "BadSMTP Test Server"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, "badsmtp.test"),
        ]
    )
    assert cert.subject == expected
    assert cert.issuer == expected
    cert.verify_directly_issued_by(cert)  # signature made with its own key


def test_signature_does_not_verify_with_another_key(provider: TLSProvider) -> None:
    cert = load(provider.certificate_pem())
    other = load(TLSProvider().certificate_pem())  # same names, different key
    with pytest.raises(InvalidSignature):
        cert.verify_directly_issued_by(other)


def test_key_is_p256_signed_with_sha256(provider: TLSProvider) -> None:
    cert = load(provider.certificate_pem())
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.version is x509.Version.v3


def test_serial_is_random_positive_and_at_most_20_octets() -> None:
    serials = [load(TLSProvider().certificate_pem()).serial_number for _ in range(5)]
    assert all(0 < s < 2 ** (20 * 8 - 1) for s in serials)  # DER INTEGER, sign bit clear
    assert len(set(serials)) == 5
    assert min(serials) > 2**64  # not a small counter like the reference's serial 1


def test_validity_is_five_minutes_back_to_seven_days_ahead() -> None:
    before = datetime.datetime.now(datetime.UTC)
    cert = load(TLSProvider().certificate_pem())
    after = datetime.datetime.now(datetime.UTC)
    second = datetime.timedelta(seconds=1)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    assert before - datetime.timedelta(minutes=5) - second <= start
    assert start <= after - datetime.timedelta(minutes=5)
    assert before + datetime.timedelta(days=7) - second <= end <= after + datetime.timedelta(days=7)


def test_default_subject_alt_names(provider: TLSProvider) -> None:
    dns, ips = san(load(provider.certificate_pem()))
    assert dns == ["badsmtp.test", "localhost"]
    assert set(ips) == LOOPBACK_IPS and len(ips) == 2


def test_sni_name_certificate_carries_the_name_and_the_defaults(provider: TLSProvider) -> None:
    cert = load(provider.certificate_pem("mx.example.org"))
    assert common_name(cert) == "mx.example.org"
    dns, ips = san(cert)
    assert dns == ["mx.example.org", "badsmtp.test", "localhost"]
    assert set(ips) == LOOPBACK_IPS


@pytest.mark.parametrize(
    ("listen_address", "extra"),
    [
        ("10.1.2.3", {ipaddress.ip_address("10.1.2.3")}),
        ("fd00::25", {ipaddress.ip_address("fd00::25")}),
        ("127.0.0.1", set()),  # no duplicate
        ("::1", set()),
        ("localhost", set()),  # not an IP address: not an IP SAN
    ],
)
def test_listen_address_in_san(listen_address: str, extra: set[object]) -> None:
    dns, ips = san(load(TLSProvider(listen_address=listen_address).certificate_pem()))
    assert sorted(map(str, ips)) == sorted(map(str, LOOPBACK_IPS | extra))
    assert dns == ["badsmtp.test", "localhost"]


def test_extensions(provider: TLSProvider) -> None:
    cert = load(provider.certificate_pem())
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert not any(
        getattr(ku.value, a)
        for a in (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        )
    )
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert not cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_long_dns_name_goes_in_san_only() -> None:
    # RFC 5280 caps a CN at 64 characters; a DNS name may have 253.
    name = ".".join(["a" * 60] * 2) + ".example"
    cert = load(TLSProvider().certificate_pem(name))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME) == []
    assert san(cert)[0][0] == name


# --- openssl verify ------------------------------------------------------------------


def openssl_verify(tmp_path: Path, pem: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "cert.pem"
    path.write_text(pem)
    return subprocess.run(
        [OPENSSL, "verify", "-x509_strict", *args, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("name", [None, "mx.example.org"])
def test_openssl_strict_verify_as_own_trust_anchor(
    tmp_path: Path, provider: TLSProvider, name: str | None
) -> None:
    pem = provider.certificate_pem(name)
    (tmp_path / "ca.pem").write_text(pem)
    result = openssl_verify(
        tmp_path, pem, "-CAfile", str(tmp_path / "ca.pem"), "-purpose", "sslserver"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


def test_openssl_verify_without_trust_is_self_signed_error(
    tmp_path: Path, provider: TLSProvider
) -> None:
    result = openssl_verify(
        tmp_path, provider.certificate_pem(), "-no-CAfile", "-no-CApath", "-no-CAstore"
    )
    assert result.returncode != 0
    assert "error 18 at 0 depth lookup: self-signed certificate" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("flag", "value", "ok"),
    [
        ("-verify_hostname", "localhost", True),
        ("-verify_hostname", "badsmtp.test", True),
        ("-verify_ip", "127.0.0.1", True),
        ("-verify_ip", "::1", True),
        ("-verify_hostname", "other.example", False),
        ("-verify_ip", "127.0.0.2", False),
    ],
)
def test_openssl_verify_names(
    tmp_path: Path, provider: TLSProvider, flag: str, value: str, ok: bool
) -> None:
    pem = provider.certificate_pem()
    (tmp_path / "ca.pem").write_text(pem)
    result = openssl_verify(tmp_path, pem, "-CAfile", str(tmp_path / "ca.pem"), flag, value)
    assert (result.returncode == 0) is ok, result.stdout + result.stderr


# --- caching, names, threads -----------------------------------------------------------


def test_certificate_is_cached_per_name(provider: TLSProvider) -> None:
    assert provider.certificate_pem() == provider.certificate_pem("badsmtp.test")
    assert provider.certificate_pem("MX.Example.ORG.") == provider.certificate_pem("mx.example.org")
    assert provider.certificate_pem("a.example") != provider.certificate_pem("b.example")


@pytest.mark.parametrize(
    "name", ["localhost", "LOCALHOST", "127.0.0.1", "::1", "bad_name.example", "-x.example", ""]
)
def test_covered_ip_or_invalid_names_get_the_default_certificate(
    provider: TLSProvider, name: str
) -> None:
    assert provider.certificate_pem(name) == provider.certificate_pem()


def test_providers_do_not_share_certificates() -> None:
    assert TLSProvider().certificate_pem() != TLSProvider().certificate_pem()


@pytest.mark.parametrize("hostname", ["not a host", "under_score.example", "x" * 254])
def test_invalid_tls_hostname_is_a_setup_error(hostname: str) -> None:
    with pytest.raises(TLSSetupError, match="tls_hostname"):
        TLSProvider(tls_hostname=hostname)


def test_ip_tls_hostname_becomes_an_ip_san() -> None:
    dns, ips = san(load(TLSProvider(tls_hostname="192.0.2.7").certificate_pem()))
    assert dns == ["localhost"]
    assert ipaddress.ip_address("192.0.2.7") in ips


def test_concurrent_first_use_generates_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = tls.generate

    def counting(name: str, *args: object) -> tuple[str, str]:
        calls.append(name)
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(tls, "generate", counting)
    p = TLSProvider()
    barrier = threading.Barrier(16)
    results: list[str] = []

    def worker() -> None:
        barrier.wait(TIMEOUT)
        results.append(p.certificate_pem("race.example"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    assert calls == ["race.example"]
    assert len(results) == 16 and len(set(results)) == 1


def test_expiring_certificate_is_regenerated(monkeypatch: pytest.MonkeyPatch) -> None:
    p = TLSProvider()
    first = p.certificate_pem()
    assert p.certificate_pem() == first  # twin: not near expiry -> cached
    monkeypatch.setattr(tls, "_RENEW_BEFORE", datetime.timedelta(days=8))
    renewed = p.certificate_pem()
    assert renewed != first
    monkeypatch.setattr(tls, "_RENEW_BEFORE", datetime.timedelta(hours=1))
    assert p.certificate_pem() == renewed
    assert handshake(p.server_context(), p.client_context(), "localhost").peer_pem == renewed


def test_cache_of_sni_names_is_bounded_and_keeps_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every distinct SNI name costs ~24 KB: a client sending thousands of names
    # must not grow the server without limit.
    monkeypatch.setattr(tls, "_CACHE_SIZE", 3)
    p = TLSProvider()
    default = p.certificate_pem()
    first = p.certificate_pem("n0.example")
    for i in range(8):
        name = f"n{i}.example"
        result = handshake(p.server_context(), p.client_context(name), name)
        assert result.cn == name
    assert p.cached_names() == ["badsmtp.test", "n5.example", "n6.example", "n7.example"]
    assert p.certificate_pem() == default  # never evicted: the promise of certificate_pem()
    # An evicted name gets a new certificate, which verifies.
    again = p.certificate_pem("n0.example")
    assert again != first
    result = handshake(p.server_context(), p.client_context("n0.example"), "n0.example")
    assert result.peer_pem == again
    assert p.cached_names() == ["badsmtp.test", "n6.example", "n7.example", "n0.example"]


def test_cache_evicts_the_least_recently_used_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls, "_CACHE_SIZE", 2)
    p = TLSProvider()
    a = p.certificate_pem("a.example")
    p.certificate_pem("b.example")
    assert p.certificate_pem("a.example") == a  # a is now the most recently used
    p.certificate_pem("c.example")
    assert p.cached_names() == ["a.example", "c.example"]
    assert p.certificate_pem("a.example") == a


def test_a_slow_generation_does_not_hold_up_other_names(monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()
    real = tls.generate

    def slow(name: str, *args: object) -> tuple[str, str]:
        if name == "slow.example":
            started.set()
            release.wait(TIMEOUT)
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(tls, "generate", slow)
    p = TLSProvider()
    slow_thread = threading.Thread(target=p.certificate_pem, args=("slow.example",))
    slow_thread.start()
    try:
        assert started.wait(TIMEOUT)
        fast: list[str] = []
        fast_thread = threading.Thread(target=lambda: fast.append(p.certificate_pem("fast.example")))
        fast_thread.start()
        fast_thread.join(TIMEOUT)
        assert fast and not fast_thread.is_alive(), "a slow generation held up another name"
    finally:
        release.set()
        slow_thread.join(TIMEOUT)
        fast_thread.join(TIMEOUT)
    assert p.cached_names() == ["fast.example", "slow.example"]


def test_a_failed_generation_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tls.generate
    failures = [RuntimeError("no entropy today")]

    def flaky(name: str, *args: object) -> tuple[str, str]:
        if failures:
            raise failures.pop()
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(tls, "generate", flaky)
    p = TLSProvider()
    with pytest.raises(RuntimeError, match="no entropy today"):
        p.certificate_pem("x.example")
    assert p.cached_names() == []
    pem = p.certificate_pem("x.example")  # the next use generates again
    assert p.certificate_pem("x.example") == pem and p.cached_names() == ["x.example"]


def test_server_context_is_cached_with_tls12_minimum(provider: TLSProvider) -> None:
    context = provider.server_context()
    assert context is provider.server_context()
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert TLSProvider().server_context() is not context


def test_client_context_verifies(provider: TLSProvider) -> None:
    context = provider.client_context()
    assert context.check_hostname is True
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.protocol is ssl.PROTOCOL_TLS_CLIENT
    # Strict X.509 checks on, so every handshake test also proves the cert is well-formed.
    assert context.verify_flags & ssl.VERIFY_X509_STRICT


# --- loopback handshakes -----------------------------------------------------------------


@dataclass
class Result:
    peer_pem: str
    version: str | None
    server_errors: list[BaseException] = field(default_factory=list)

    @property
    def cn(self) -> str:
        return common_name(load(self.peer_pem))


def handshake(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    server_hostname: str | None,
) -> Result:
    """One TLS handshake over loopback: a bare socket + ssl server thread (no SMTP)."""
    server_errors: list[BaseException] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(TIMEOUT)
                    with server_context.wrap_socket(conn, server_side=True):
                        pass
            except (OSError, ssl.SSLError) as exc:  # expected when the client refuses
                server_errors.append(exc)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            address = listener.getsockname()
            with (
                socket.create_connection(address, timeout=TIMEOUT) as raw,
                client_context.wrap_socket(raw, server_hostname=server_hostname) as conn,
            ):
                der = conn.getpeercert(binary_form=True)
                assert der is not None
                return Result(ssl.DER_cert_to_PEM_cert(der), conn.version(), server_errors)
        finally:
            thread.join(TIMEOUT)
            assert not thread.is_alive()


@pytest.mark.parametrize(
    ("trusted", "server_hostname", "expected_cn"),
    [
        (None, "localhost", "badsmtp.test"),  # the default cert covers localhost
        (None, "badsmtp.test", "badsmtp.test"),
        (None, "127.0.0.1", "badsmtp.test"),  # IP: no SNI is sent (RFC 6066 §3)
        ("mx.example.org", "mx.example.org", "mx.example.org"),  # per-SNI certificate
        ("MX.example.org", "mx.EXAMPLE.org", "mx.example.org"),
    ],
)
def test_handshake_verifies(
    provider: TLSProvider, trusted: str | None, server_hostname: str, expected_cn: str
) -> None:
    result = handshake(provider.server_context(), provider.client_context(trusted), server_hostname)
    assert result.cn == expected_cn
    # The very certificate certificate_pem() handed out.
    assert load(result.peer_pem) == load(provider.certificate_pem(trusted))
    assert result.version == "TLSv1.3"


def test_default_context_fails_with_self_signed_error(provider: TLSProvider) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        handshake(provider.server_context(), ssl.create_default_context(), "localhost")
    assert info.value.verify_code == 18  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    assert "self-signed certificate" in info.value.verify_message


def test_default_certificate_does_not_verify_another_sni_name(provider: TLSProvider) -> None:
    # Per-SNI selection: mx.example.org gets its own certificate, not the trusted default.
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        handshake(provider.server_context(), provider.client_context(), "mx.example.org")
    assert info.value.verify_code == 18


def test_invalid_sni_name_gets_default_certificate_and_hostname_error(
    provider: TLSProvider,
) -> None:
    # The cert is trusted, so only the host name check can fail: proves the fallback.
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        handshake(provider.server_context(), provider.client_context(), "bad_name.example")
    assert info.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH


def test_ip_not_in_certificate_fails_ip_verification(provider: TLSProvider) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        handshake(provider.server_context(), provider.client_context(), "127.0.0.2")
    assert info.value.verify_code == 64  # X509_V_ERR_IP_ADDRESS_MISMATCH


def legacy_client(maximum: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client itself offer TLS 1.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = maximum
    return context


@pytest.mark.skipif(not ssl.HAS_TLSv1_1, reason="TLS 1.1 not compiled in")
def test_tls11_client_is_refused(provider: TLSProvider) -> None:
    with pytest.raises(ssl.SSLError) as info:
        handshake(provider.server_context(), legacy_client(ssl.TLSVersion.TLSv1_1), "localhost")
    assert info.value.reason in {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"}


@pytest.mark.skipif(not ssl.HAS_TLSv1_1, reason="TLS 1.1 not compiled in")
@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])  # with and without SNI
def test_same_legacy_client_capped_at_tls12_succeeds(
    provider: TLSProvider, server_hostname: str
) -> None:
    client = legacy_client(ssl.TLSVersion.TLSv1_2)
    result = handshake(provider.server_context(), client, server_hostname)
    assert result.version == "TLSv1.2"
    assert result.peer_pem == provider.certificate_pem()


def test_generation_failure_fails_the_handshake_and_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> tuple[str, str]:
        raise RuntimeError("no entropy today")

    monkeypatch.setattr(tls, "generate", broken)
    p = TLSProvider()
    with pytest.raises(ssl.SSLError) as info:
        handshake(p.server_context(), ssl.create_default_context(), "localhost")
    assert info.value.reason == "TLSV1_ALERT_INTERNAL_ERROR"
    record = next(r for r in caplog.records if r.name == "badsmtp.tls")
    assert record.exc_info is not None and "no entropy today" in str(record.exc_info[1])


# --- user-supplied certificate files ---------------------------------------------------------


def make_cert(
    name: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    ca: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode("ascii")


@dataclass
class Files:
    cert: Path
    key: Path
    leaf_pem: str


@pytest.fixture
def files(tmp_path: Path) -> Files:
    cert, key = make_cert("files.example")
    (tmp_path / "cert.pem").write_text(pem(cert))
    (tmp_path / "key.pem").write_text(key_pem(key))
    return Files(tmp_path / "cert.pem", tmp_path / "key.pem", pem(cert))


def test_user_files_are_presented_for_every_name(files: Files) -> None:
    p = TLSProvider(cert_file=str(files.cert), key_file=str(files.key))
    assert p.certificate_pem() == files.leaf_pem
    assert p.certificate_pem("mx.example.org") == files.leaf_pem
    result = handshake(p.server_context(), p.client_context(), "files.example")
    assert result.cn == "files.example"
    assert result.peer_pem == files.leaf_pem


def test_user_files_ignore_sni_so_other_name_fails_hostname_check(files: Files) -> None:
    # The client trusts the certificate; asking for a name not in it must still fail.
    p = TLSProvider(cert_file=str(files.cert), key_file=str(files.key))
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        handshake(p.server_context(), p.client_context(), "other.example")
    assert info.value.verify_code == 62


def test_user_chain_leaf_is_trusted_without_its_ca(tmp_path: Path) -> None:
    ca, ca_key = make_cert("Test CA", ca=True)
    leaf, leaf_key = make_cert("chain.example", issuer=(ca.subject, ca_key))
    (tmp_path / "chain.pem").write_text(pem(leaf) + pem(ca))
    (tmp_path / "key.pem").write_text(key_pem(leaf_key))
    p = TLSProvider(cert_file=str(tmp_path / "chain.pem"), key_file=str(tmp_path / "key.pem"))
    assert p.certificate_pem() == pem(leaf)
    assert handshake(p.server_context(), p.client_context(), "chain.example").cn == "chain.example"


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


SetupCase = Callable[[Path, Files], tuple[str | None, str | None]]

SETUP_ERRORS: dict[str, tuple[SetupCase, str]] = {
    "missing cert": (
        lambda d, f: (str(d / "nope.pem"), str(f.key)),
        "cannot read TLS certificate file .*nope.pem",
    ),
    "missing key": (
        lambda d, f: (str(f.cert), str(d / "nope.key")),
        "cannot read TLS key file .*nope.key",
    ),
    "cert is a directory": (lambda d, f: (str(d), str(f.key)), "cannot read TLS certificate file"),
    "garbage cert": (
        lambda d, f: (write(d / "g.pem", "hello\n"), str(f.key)),
        "contains no PEM certificate",
    ),
    "corrupt cert": (
        lambda d, f: (
            write(d / "c.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            str(f.key),
        ),
        "c.pem is not a valid PEM certificate",
    ),
    "garbage key": (
        lambda d, f: (str(f.cert), write(d / "g.key", "hello\n")),
        "g.key for .*: it holds no usable PEM private key",
    ),
    "mismatched key": (
        lambda d, f: (
            str(f.cert),
            write(d / "o.key", key_pem(ec.generate_private_key(ec.SECP256R1()))),
        ),
        "o.key for .*cert.pem: it does not match the certificate",
    ),
    "encrypted key": (
        lambda d, f: (
            str(f.cert),
            write(d / "e.key", key_pem(ec.generate_private_key(ec.SECP256R1()), b"pw")),
        ),
        "e.key.*encrypted",
    ),
    "cert only": (lambda d, f: (str(f.cert), None), "only tls_cert_file"),
    "key only": (lambda d, f: (None, str(f.key)), "only tls_key_file"),
}


@pytest.mark.parametrize("case", list(SETUP_ERRORS))
def test_bad_user_files_fail_at_construction(tmp_path: Path, files: Files, case: str) -> None:
    make, message = SETUP_ERRORS[case]
    cert_file, key_file = make(tmp_path, files)
    with pytest.raises(TLSSetupError, match=message) as info:
        TLSProvider(cert_file=cert_file, key_file=key_file)
    assert "\n" not in str(info.value)


def test_empty_file_settings_mean_generated(files: Files) -> None:
    p = TLSProvider(cert_file="", key_file="")
    assert common_name(load(p.certificate_pem())) == "badsmtp.test"


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    """No thread started by the test outlives it.  Threads of earlier tests
    may end meanwhile (an idle handler thread leaves after its timeout):
    comparing counts failed on those, now and then, under xdist."""
    before = set(threading.enumerate())
    yield
    leaked = [t.name for t in threading.enumerate() if t not in before]
    assert leaked == []
