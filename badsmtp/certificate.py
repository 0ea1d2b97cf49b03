"""TLS server certificates, made with ``cryptography`` (for
:class:`badsmtp.tls.TLSProvider`, which caches and presents them): the
self-signed default, and a test CA with the certificates it issues for the
TLS faults (badsmtp(1), TLS FAULTS).

The certificate is an end-entity certificate that works as its own trust
anchor (RFC 5280 §6.1), passes OpenSSL 3's ``-x509_strict`` checks and
carries every name it is given.  ``cryptography`` is imported on the first
call, never at import: a plain-SMTP server must start in milliseconds.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["BACKDATE", "CA_VALIDITY", "VALIDITY", "Authority", "IPAddress", "generate", "generate_ca"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

BACKDATE = datetime.timedelta(minutes=5)  # absorbs small clock differences
VALIDITY = datetime.timedelta(days=7)
CA_VALIDITY = datetime.timedelta(days=365)  # the test CA outlives any test run
_CN_MAX = 64  # RFC 5280 Appendix A: ub-common-name
_CA_NAME = "BadSMTP Test CA"


@dataclass(frozen=True, slots=True)
class Authority:
    """A test certificate authority: its certificate (PEM and parsed) and its key."""

    pem: str
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def generate_ca(now: datetime.datetime) -> Authority:
    """A fresh self-signed CA certificate (RFC 5280 §4.2.1.9) that issues the
    TLS fault certificates (badsmtp(1), TLS FAULTS)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    subject = _subject(_CA_NAME)
    certificate = (
        _builder(subject, subject, public, now - BACKDATE, now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        # keyCertSign and cRLSign only (RFC 5280 §4.2.1.3).
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return Authority(pem, certificate, key)


def generate(
    name: str,
    dns_names: list[str],
    ips: list[IPAddress],
    now: datetime.datetime,
    *,
    issuer: Authority | None = None,
    valid: tuple[datetime.datetime, datetime.datetime] | None = None,
) -> tuple[str, str]:
    """A fresh certificate for ``name``: (certificate PEM, key PEM).  Self-signed
    unless an ``issuer`` signs it; valid from ``now`` for :data:`VALIDITY` unless
    ``valid`` gives (not before, not after)."""
    # Imported here, not at module level: see the module docstring.
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    subject = _subject(name)
    begin, end = valid or (now - BACKDATE, now + VALIDITY)
    # self-signed: subject == issuer
    issuer_name = subject if issuer is None else issuer.certificate.subject
    builder = _builder(subject, issuer_name, public, begin, end)
    issuer_public = public if issuer is None else issuer.key.public_key()
    signer = key if issuer is None else issuer.key
    builder = _server_extensions(builder, public, issuer_public, dns_names, ips)
    certificate = builder.sign(signer, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"), key_pem.decode()


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public: ec.EllipticCurvePublicKey,
    begin: datetime.datetime,
    end: datetime.datetime,
) -> x509.CertificateBuilder:
    from cryptography import x509

    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())  # positive, <= 20 octets (RFC 5280 §4.1.2.2)
        .not_valid_before(begin)
        .not_valid_after(end)
    )


def _subject(name: str) -> x509.Name:
    """The subject (and issuer): fixed test attributes, and ``name`` as the
    CN when it fits in one."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Test"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Test"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "BadSMTP Test Server"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Test"),
    ]
    if len(name) <= _CN_MAX:  # a longer DNS name (up to 253) lives in the SAN only
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
    return x509.Name(attributes)


def _server_extensions(
    builder: x509.CertificateBuilder,
    public: ec.EllipticCurvePublicKey,
    issuer_public: ec.EllipticCurvePublicKey,
    dns_names: list[str],
    ips: list[IPAddress],
) -> x509.CertificateBuilder:
    """The extensions of a TLS server's end-entity certificate, as strict
    verifiers want them."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt_names += [x509.IPAddress(ip) for ip in ips]
    return (
        # RFC 6125 §6.4.4: verifiers match the SAN, not the CN; non-critical because the
        # subject is not empty (RFC 5280 §4.2.1.6).
        builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        # digitalSignature only: an ECDSA server key only signs its handshakes (RFC 5280
        # §4.2.1.3, RFC 8446 §4.4.3).  Positional: the other eight flags, all False.
        .add_extension(x509.KeyUsage(True, *[False] * 8), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # Strict verifiers (OpenSSL 3 -x509_strict) want both key identifiers (RFC 5280 §4.2.1.1-2).
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)
    )
