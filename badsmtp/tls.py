"""TLS edge: self-signed certificates (``cryptography``) and ``ssl.SSLContext`` factories.

No SMTP knowledge here; the server wraps sockets with :meth:`TLSProvider.server_context` for
implicit TLS and after STARTTLS alike.  Generated certificates (badsmtp(1), --write-tls-cert;
made by :mod:`badsmtp.certificate`, cached here per name) are self-signed end-entity
certificates that work as their own trust anchor (RFC 5280 §6.1), pass OpenSSL 3's
``-x509_strict`` checks and carry every name a test client is likely to dial; a client not
given the PEM still sees the classic "self-signed certificate" error.
``cryptography`` is imported on the first generation, never at import or construction: a
plain-SMTP server must start in milliseconds.  So is ``ssl`` (imported by the functions that
build or inspect contexts): a provider without certificate files is built without it, and
the first TLS handshake loads it.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import DEFAULT_ADDRESS, DEFAULT_HOSTNAME

if TYPE_CHECKING:
    import ssl
    from concurrent.futures import Future

    from .certificate import IPAddress
    from .certstore import SharedCertificates
    from .tlsfaults import FaultCertificates

__all__ = ["TLSProvider", "TLSSetupError"]

_log = logging.getLogger("badsmtp.tls")

_RENEW_BEFORE = datetime.timedelta(hours=1)  # never hand out a certificate about to expire
# Certificates kept for SNI names other than tls_hostname, least recently used
# evicted first: each costs ~24 KB (mostly its SSLContext), and a client can
# send any number of names.  The default certificate is never evicted.
_CACHE_SIZE = 256
_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
# RFC 1123 §2.1 host name label: letters, digits, hyphens; no hyphen at either end.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_PEM_CERT = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


class TLSSetupError(Exception):
    """TLS cannot be set up (unusable certificate/key files or settings); one-line message."""


@dataclass(frozen=True, slots=True)
class _Issued:
    """One generated certificate and the server context that presents it."""

    pem: str
    context: ssl.SSLContext
    not_after: datetime.datetime


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None


def _dns_name(text: str) -> str | None:
    """``text`` as a lower-case DNS host name, or None if it is not one.

    IP literals are refused: RFC 6066 §3 forbids them in SNI.  One trailing dot is
    tolerated (a fully qualified name); names compare case-insensitively (RFC 4343).
    """
    name = text.lower().removesuffix(".")
    if not name or len(name) > 253 or _ip(name) is not None:
        return None
    if all(_LABEL.match(label) for label in name.split(".")):
        return name
    return None


def generate(
    name: str, dns_names: list[str], ips: list[IPAddress], now: datetime.datetime
) -> tuple[str, str]:
    """:func:`badsmtp.certificate.generate`, loaded on the first call (the
    first handshake), not with the server: a plain start never needs it."""
    from . import certificate

    return certificate.generate(name, dns_names, ips, now)


def _now() -> datetime.datetime:
    # X.509 times have one-second resolution (RFC 5280 §4.1.2.5).
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _new_server_context() -> ssl.SSLContext:
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996 retires 1.0 and 1.1
    # Shutdown wakes a reader by shutting the socket's read side (badsmtp(1), SIGNALS).  Without
    # this option OpenSSL takes that EOF as fatal (a decode_error alert, no more writes),
    # so the 421 and the close_notify could never be sent over TLS.
    context.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return context


def _refuse_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and hang a server or a test run.
    raise TLSSetupError("the TLS key is encrypted; badsmtp needs an unencrypted PEM key")


def _load_pem(context: ssl.SSLContext, pem: str) -> None:
    """Load a certificate + key PEM into ``context``.

    ``load_cert_chain`` only takes paths, so the PEM passes through a private temporary
    file (mkstemp creates it 0600) that is deleted as soon as it is loaded.
    """
    import tempfile  # only with a certificate: a plain start loads none

    fd, path = tempfile.mkstemp(prefix="badsmtp-", suffix=".pem")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(pem)
        context.load_cert_chain(path, password=_refuse_password)
    finally:
        os.unlink(path)


def _context_for(pem: str) -> ssl.SSLContext:
    """A server context presenting the certificate + key in ``pem``."""
    context = _new_server_context()
    _load_pem(context, pem)
    return context


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError as exc:
        raise TLSSetupError(f"cannot read TLS {what} file {path}: {exc.strerror}") from None


def _load_files(cert_file: str, key_file: str) -> tuple[str, ssl.SSLContext]:
    """Load user-supplied PEM files at start-up (badsmtp(1), --tls-cert-file): (leaf PEM,
    server context)."""
    import ssl

    leaf = _PEM_CERT.search(_read(cert_file, "certificate"))
    _read(key_file, "key")
    if leaf is None:
        raise TLSSetupError(f"TLS certificate file {cert_file} contains no PEM certificate")
    leaf_pem = leaf.group(0).replace("\r\n", "\n") + "\n"
    try:
        # Parse the leaf on its own first, so a broken certificate is not blamed on the key.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=leaf_pem)
    except ssl.SSLError:
        raise TLSSetupError(
            f"TLS certificate file {cert_file} is not a valid PEM certificate"
        ) from None
    context = _new_server_context()
    try:
        context.load_cert_chain(cert_file, key_file, password=_refuse_password)
    except TLSSetupError as exc:
        raise TLSSetupError(f"cannot load TLS key file {key_file}: {exc}") from None
    except ssl.SSLError as exc:
        # exc.reason is OpenSSL's reason code, not message text.
        problem = (
            "it does not match the certificate"
            if exc.reason == "KEY_VALUES_MISMATCH"
            else "it holds no usable PEM private key"
        )
        raise TLSSetupError(
            f"cannot load TLS key file {key_file} for {cert_file}: {problem}"
        ) from None
    return leaf_pem, context


class TLSProvider:
    """Certificates and SSL contexts for one server instance (its own cache and lock).

    With ``cert_file`` and ``key_file`` (empty strings count as unset) the files are loaded
    now and always presented; otherwise certificates are generated on demand per name.
    """

    def __init__(
        self,
        tls_hostname: str = DEFAULT_HOSTNAME,
        listen_address: str = DEFAULT_ADDRESS,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> None:
        ip = _ip(tls_hostname)
        hostname = _dns_name(tls_hostname) or (str(ip) if ip is not None else None)
        if hostname is None:
            raise TLSSetupError(
                f"tls_hostname {tls_hostname!r} is neither a DNS host name nor an IP address"
            )
        self._hostname = hostname
        self._listen_ip = _ip(listen_address)
        # _lock guards the cache and _pending, never a generation: a slow one must not
        # hold up handshakes for other names.  _pending holds the generations under
        # way, so racing handshakes for one name wait for one generation.
        self._lock = threading.Lock()
        self._context_lock = threading.Lock()
        self._default: _Issued | None = None  # tls_hostname's: never evicted
        self._issued: OrderedDict[str, _Issued] = OrderedDict()  # other names, LRU first
        self._pending: dict[str, Future[_Issued]] = {}
        self._context: ssl.SSLContext | None = None
        self._files_pem: str | None = None
        self._faults: FaultCertificates | None = None  # made on the first TLS fault
        self._fault_contexts: dict[str, ssl.SSLContext] = {}
        if cert_file or key_file:
            if not (cert_file and key_file):
                given = f"tls_cert_file {cert_file}" if cert_file else f"tls_key_file {key_file}"
                raise TLSSetupError(f"tls_cert_file and tls_key_file go together; only {given}")
            self._files_pem, self._context = _load_files(cert_file, key_file)

    def server_context(self) -> ssl.SSLContext:
        """The context to wrap server sockets with (``server_side=True``); built once.

        For generated certificates it holds no certificate itself: its ``sni_callback``,
        which OpenSSL runs for every ClientHello (with ``None`` when there is no SNI),
        switches the connection to the context of the right name.  So building it is cheap
        and imports nothing; the first handshake generates the first certificate.
        """
        with self._context_lock:
            if self._context is None:
                context = _new_server_context()
                context.sni_callback = self._select
                self._context = context
            return self._context

    def certificate_pem(self, name: str | None = None) -> str:
        """PEM of the certificate the server presents for ``name`` (default ``tls_hostname``).

        Generated on demand and cached, so it is the very certificate a handshake with that
        SNI name (or an IP address / no SNI, for the default) will see.  The default stays
        cached for the provider's life; another name's certificate is replaced by a new one
        once a few hundred other names have been used since (see :meth:`cached_names`).
        """
        if self._files_pem is not None:
            return self._files_pem
        return self._issue(self._name_for(name)).pem

    def client_context(self, name: str | None = None) -> ssl.SSLContext:
        """A client context trusting exactly :meth:`certificate_pem` for ``name``."""
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        # STRICT: prove the certificate is well-formed, as Python 3.13's defaults will.
        # PARTIAL_CHAIN: a user-supplied leaf issued by a CA is an anchor on its own.
        context.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
        context.load_verify_locations(cadata=self.certificate_pem(name))
        return context

    # -- badssl for SMTP (badsmtp(1), TLS FAULTS) ---------------------------------------
    def _fault_certificates(self) -> FaultCertificates:
        with self._context_lock:
            if self._faults is None:
                from .tlsfaults import FaultCertificates

                self._faults = FaultCertificates(self._alt_names, _context_for, _now)
            return self._faults

    def ca_pem(self) -> str:
        """PEM of the test CA that issues the TLS fault certificates (generated on
        first use, then the same for the provider's life)."""
        return self._fault_certificates().ca().pem

    def ca_client_context(self) -> ssl.SSLContext:
        """A verifying client context trusting the test CA and the default
        certificate: the default certificate passes, each TLS fault fails for its
        own reason."""
        context = self.client_context()
        context.load_verify_locations(cadata=self.ca_pem())
        return context

    def fault_context(self, fault: str) -> ssl.SSLContext:
        """The server context for a certificate fault (``certexpired``, ...): like
        :meth:`server_context`, it picks the certificate per SNI name."""
        import ssl

        faults = self._fault_certificates()
        with self._context_lock:
            context = self._fault_contexts.get(fault)
            if context is None:
                context = _new_server_context()

                def select(connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                           _context: ssl.SSLContext) -> int | None:  # fmt: skip
                    try:
                        connection.context = faults.context(fault, self._name_for(server_name))
                    except Exception:  # noqa: BLE001  (see _select)
                        _log.exception("cannot provide a %s certificate for %r", fault, server_name)
                        return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
                    return None

                context.sni_callback = select
                self._fault_contexts[fault] = context
            return context

    def _name_for(self, requested: str | None) -> str:
        """The certificate name for the SNI name a client sent (RFC 6066 §3), or for none."""
        name = None if requested is None else _dns_name(requested)
        # Names the default certificate already carries get that certificate, so one
        # trusted PEM serves "localhost", 127.0.0.1, ::1 and tls_hostname (badsmtp(1),
        # --write-tls-cert).
        if name is None or name == "localhost":
            return self._hostname
        return name

    def _alt_names(self, name: str) -> tuple[list[str], list[IPAddress]]:
        dns_names: list[str] = []
        ips: list[IPAddress] = []
        for text in (name, self._hostname, "localhost"):
            ip = _ip(text)  # only possible when tls_hostname is an IP address
            if ip is not None and ip not in ips:
                ips.append(ip)
            elif ip is None and text not in dns_names:
                dns_names.append(text)
        for ip in (*_LOOPBACK, self._listen_ip):
            if ip is not None and ip not in ips:
                ips.append(ip)
        return dns_names, ips

    def cached_names(self) -> list[str]:
        """The names whose generated certificate is held now, least recently used first
        (the default name, never evicted, comes first once generated)."""
        with self._lock:
            return ([self._hostname] if self._default is not None else []) + list(self._issued)

    def _cached(self, name: str, now: datetime.datetime) -> _Issued | None:
        """The usable cached certificate for ``name``; call with ``_lock`` held."""
        if name == self._hostname:
            issued = self._default
        else:
            issued = self._issued.get(name)
            if issued is not None:
                self._issued.move_to_end(name)
        if issued is None or issued.not_after - now < _RENEW_BEFORE:
            return None
        return issued

    def _keep(self, name: str, issued: _Issued) -> None:
        """Cache ``issued``, evicting the least recently used name; call with ``_lock`` held."""
        if name == self._hostname:
            self._default = issued
            return
        self._issued[name] = issued
        self._issued.move_to_end(name)
        while len(self._issued) > _CACHE_SIZE:
            self._issued.popitem(last=False)

    def _issue(self, name: str) -> _Issued:
        now = _now()
        with self._lock:
            issued = self._cached(name, now)
            if issued is not None:
                return issued
            pending = self._pending.get(name)
            generating = pending is None
            if pending is None:
                from concurrent.futures import Future  # first generation only: a start stays lean

                pending = self._pending[name] = Future()
        if not generating:
            return pending.result()  # another handshake is generating this name
        try:
            issued = self._make(name, now)
        except BaseException as exc:
            with self._lock:
                del self._pending[name]
            pending.set_exception(exc)
            raise
        with self._lock:
            self._keep(name, issued)
            del self._pending[name]
        pending.set_result(issued)
        return issued

    def share(self, store: SharedCertificates) -> None:
        """Take generated certificates from ``store``, which processes share
        (``badsmtp --workers``): every worker presents the same one per name."""
        self._shared = store

    _shared: SharedCertificates | None = None

    def _make(self, name: str, now: datetime.datetime) -> _Issued:
        from .certificate import VALIDITY

        if self._shared is not None:
            cert_pem, key_pem, now = self._shared.get(name, now, self._generate)
        else:
            cert_pem, key_pem = self._generate(name, now)
        context = _new_server_context()
        _load_pem(context, cert_pem + key_pem)
        return _Issued(cert_pem, context, now + VALIDITY)

    def _generate(self, name: str, now: datetime.datetime) -> tuple[str, str]:
        pems = generate(name, *self._alt_names(name), now)
        _log.debug("generated TLS certificate for %s", name)
        return pems

    @staticmethod
    def own_fault(exc: BaseException) -> bool:
        """Whether a server handshake failed through badsmtp's own fault rather
        than the client's: the certificate callback (:meth:`_select`) refused it
        and has logged why.  ``reason`` is OpenSSL's reason code, not message
        text; the only callback on these contexts is the SNI one."""
        import ssl

        return isinstance(exc, ssl.SSLError) and exc.reason == "CALLBACK_FAILED"

    def _select(
        self,
        connection: ssl.SSLObject | ssl.SSLSocket,
        server_name: str | None,
        _context: ssl.SSLContext,
    ) -> int | None:
        try:
            connection.context = self._issue(self._name_for(server_name)).context
        # Anything raised here would only be printed by ssl; fail the handshake cleanly.
        except Exception:  # noqa: BLE001
            import ssl

            _log.exception("cannot provide a TLS certificate for %r", server_name)
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None
