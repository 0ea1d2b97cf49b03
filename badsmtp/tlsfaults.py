"""badssl for SMTP (badsmtp(1), TLS FAULTS): a per-server test CA and the
certificates that fail a verifying client for exactly one reason each.

``certexpired``, ``certfuture`` and ``certwronghost`` are issued by the CA,
so a client that trusts :meth:`FaultCertificates.ca_pem` sees only the one
fault; ``certselfsigned`` is not (self-signed, for the right names).
Everything is generated on first use and cached for the provider's life:
a server that never sees a fault never generates a key.
"""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Callable

from .certificate import BACKDATE, VALIDITY, Authority, IPAddress, generate, generate_ca

__all__ = ["WRONG_HOST", "FaultCertificates"]

WRONG_HOST = "wronghost.invalid"  # RFC 2606 §2: a name that can never be the server's
_SHIFT = datetime.timedelta(days=30)  # how far outside its validity a bad certificate is

AltNames = Callable[[str], tuple[list[str], list[IPAddress]]]


class FaultCertificates:
    """The CA and the fault certificates of one server, per fault and name."""

    def __init__(
        self, alt_names: AltNames, load: Callable[[str], ssl.SSLContext], now: Callable[[], datetime.datetime]
    ) -> None:
        self._alt_names = alt_names  # the names the default certificate carries, per SNI name
        self._load = load  # certificate + key PEM -> a server context presenting them
        self._now = now
        self._lock = threading.Lock()  # guards every generation: faults are rare
        self._ca: Authority | None = None
        self._issued: dict[tuple[str, str], tuple[ssl.SSLContext, datetime.datetime]] = {}

    def ca(self) -> Authority:
        with self._lock:
            return self._authority()

    def _authority(self) -> Authority:
        if self._ca is None:
            self._ca = generate_ca(self._now())
        return self._ca

    def context(self, fault: str, name: str) -> ssl.SSLContext:
        """A server context presenting the ``fault`` certificate for ``name``."""
        now = self._now()
        with self._lock:
            cached = self._issued.get((fault, name))
            if cached is not None and cached[1] > now:
                return cached[0]
            if len(self._issued) > 256:  # a client can send any number of SNI names
                self._issued.clear()
            context = self._load(self._make(fault, name, now))
            self._issued[(fault, name)] = (context, now + VALIDITY - BACKDATE)
            return context

    def _make(self, fault: str, name: str, now: datetime.datetime) -> str:
        """Certificate + key PEM for ``fault``; call with ``_lock`` held."""
        dns_names, ips = self._alt_names(name)
        issuer: Authority | None = self._authority()
        valid = None
        if fault == "certexpired":
            valid = (now - 2 * _SHIFT, now - _SHIFT)
        elif fault == "certfuture":
            valid = (now + _SHIFT, now + 2 * _SHIFT)
        elif fault == "certwronghost":
            name, dns_names, ips = WRONG_HOST, [WRONG_HOST], []
        elif fault == "certselfsigned":
            issuer = None
        else:
            raise ValueError(f"no certificate for TLS fault {fault!r}")
        cert_pem, key_pem = generate(name, dns_names, ips, now, issuer=issuer, valid=valid)
        return cert_pem + key_pem
