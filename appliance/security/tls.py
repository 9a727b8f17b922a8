"""TLS material for the gRPC API: the appliance's own CA, the server certificate, client certificates.

Lyra serves beyond loopback only over TLS (``[server.tls] enabled = true``). Rather than ask the
operator to run a PKI, ``lyrad init`` (and every start with TLS enabled) calls
:func:`ensure_tls_material`, which creates what is missing in ``<data_dir>/tls/``:

====================  ======  ===============================================================
file                  mode    what
====================  ======  ===============================================================
``ca.crt``            0644    the appliance CA (copy it to each operator's laptop and trust it)
``ca.key``            0600    the CA's private key (only needed to issue/renew certificates;
                              it may be moved offline once client certificates are issued)
``server.crt``        0644    the server certificate, signed by the CA
``server.key``        0600    the server's private key
====================  ======  ===============================================================

(``server.crt``/``server.key``/``ca.crt`` are the defaults of ``server.tls.cert``, ``.key`` and
``.client_ca``; the paths come from the configuration, ``ca.key`` always sits beside ``ca.crt``.)

Certificates follow RFC 5280 (Internet X.509 PKI Certificate and CRL Profile):

* **CA**: ECDSA P-256 / SHA-256, valid :data:`CA_VALIDITY_DAYS` (10 years). ``basicConstraints``
  critical, cA=TRUE, pathLenConstraint=0 (RFC 5280 4.2.1.9); ``keyUsage`` critical,
  keyCertSign + cRLSign (4.2.1.3); subject/authority key identifiers (4.2.1.1, 4.2.1.2).
* **Server**: ECDSA P-256 / SHA-256, valid :data:`SERVER_VALIDITY_DAYS` (825 days, the longest
  validity Apple platforms accept for a TLS server certificate). ``subjectAltName``
  (4.2.1.6): DNS ``localhost``, the machine's host name (and FQDN), IP ``127.0.0.1`` and
  ``::1``, the host of ``server.listen`` when it is a concrete address, and every
  ``server.tls.san`` entry (parsed as an IP address if it is one, else as a DNS name).
  ``extKeyUsage`` serverAuth (4.2.1.12); ``keyUsage`` critical, digitalSignature;
  ``basicConstraints`` critical, cA=FALSE.
* **Client** (mutual TLS): as the server certificate but CN = the client's name, SAN DNS =
  the name when it is a valid DNS label sequence, ``extKeyUsage`` clientAuth, valid
  :data:`CLIENT_VALIDITY_DAYS`.

``notBefore`` is backdated :data:`BACKDATE` to tolerate clock skew between the appliance and
its clients. Serial numbers are 159-bit random (RFC 5280 4.1.2.2: positive, at most 20 octets).

Private keys are PKCS#8 PEM, unencrypted (the daemon must start unattended), created with
``os.open(O_CREAT | O_EXCL, 0o600)`` so they are never readable by anyone else, not even for an
instant; replacing one (renewal) writes a new 0600 file and renames it over the old one.

Nothing here logs or returns a private key except :func:`issue_client_certificate`, whose
caller (``lyrad tls issue-client``) writes it to a 0600 file.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.config import LOOPBACK_HOSTS, LyraConfig
from appliance.engine.clock import LiveClock

log = logging.getLogger("lyra.tls")

CA_VALIDITY_DAYS = 3650
SERVER_VALIDITY_DAYS = 825
CLIENT_VALIDITY_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
"""A managed server certificate that expires within this is renewed by :func:`ensure_tls_material`."""
BACKDATE = dt.timedelta(minutes=5)

CA_COMMON_NAME_PREFIX = "Lyra appliance CA"
ORGANIZATION = "Lyra"

KEY_MODE = 0o600
CERT_MODE = 0o644
DIR_MODE = 0o700

_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class TlsError(Exception):
    """TLS material is unusable or cannot be created; the message names the file or the
    configuration key and says what to do. Never contains key material."""


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """Where the TLS files are and what they say (no private key content).

    Attributes:
        ca_cert: path of the CA certificate (PEM) - what clients must trust.
        ca_key: path of the CA private key (may not exist if the operator moved it offline).
        server_cert, server_key: paths of the server certificate and key (PEM).
        ca_fingerprint_sha256: SHA-256 of the CA certificate's DER, colon-separated upper-case
            hex (the format of ``openssl x509 -noout -fingerprint -sha256 -in ca.crt``).
        server_sans: the server certificate's subjectAltName entries, ``"DNS:name"`` / ``"IP:addr"``.
        server_not_after: the server certificate's expiry (UTC, aware).
        managed: True if the server certificate was issued by the appliance CA (then Lyra renews
            it); False for an operator-provided certificate (never touched).
        changes: what this call did, e.g. ``("created CA", "issued server certificate")``;
            empty when everything was already in place.
    """

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    ca_fingerprint_sha256: str
    server_sans: tuple[str, ...]
    server_not_after: dt.datetime
    managed: bool
    changes: tuple[str, ...] = field(default=())


# -- helpers: time, names, files ---------------------------------------------------------------------
def utcnow() -> dt.datetime:
    """The wall clock as an aware UTC datetime. X.509 validity is wall-clock time by nature
    (RFC 5280 4.1.2.5), so this reads :class:`~appliance.engine.clock.LiveClock`, never the
    replay's SimClock."""
    return dt.datetime.fromtimestamp(LiveClock().now_ns() / 1e9, dt.timezone.utc)


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of ``cert`` (over its DER encoding), ``"AB:CD:..."`` (95 characters)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def format_sans(cert: x509.Certificate) -> tuple[str, ...]:
    """The subjectAltName of ``cert`` as ``("DNS:localhost", "IP:127.0.0.1", ...)`` (empty if none)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    out = []
    for name in san:
        if isinstance(name, x509.DNSName):
            out.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            out.append(f"IP:{name.value}")
        else:
            out.append(str(name.value))
    return tuple(out)


def _not_after(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc


def _is_dns_name(value: str) -> bool:
    labels = value.rstrip(".").split(".")
    if labels and labels[0] == "*":  # a wildcard is allowed as the left-most label only (RFC 6125 6.4.3)
        labels = labels[1:]
    return bool(labels) and len(value) <= 253 and all(_DNS_LABEL.match(label) for label in labels)


def parse_san(entry: str, where: str = "server.tls.san") -> x509.GeneralName:
    """One SAN entry -> an ``IPAddress`` (if it parses as IPv4/IPv6, optionally in brackets) or a
    ``DNSName``.

    Raises:
        TlsError: neither a valid IP address nor a valid DNS name (the message names ``where``).
    """
    text = entry.strip()
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return x509.IPAddress(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if not _is_dns_name(text):
        raise TlsError(f"{where}: {entry!r} is neither an IP address nor a valid DNS name")
    return x509.DNSName(text.rstrip(".").lower())


def _listen_host_san(listen: str) -> x509.GeneralName | None:
    host = listen.rpartition(":")[0].strip("[]")
    if not host or host in LOOPBACK_HOSTS:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return x509.DNSName(host.lower()) if _is_dns_name(host) else None
    return None if address.is_unspecified else x509.IPAddress(address)


def desired_server_sans(config: LyraConfig) -> list[x509.GeneralName]:
    """The SANs the server certificate must carry, in a stable order without duplicates.

    DNS localhost, the host name and FQDN (when they are valid DNS names), IP 127.0.0.1 and ::1,
    the host of ``server.listen`` when it is a concrete address, then ``server.tls.san``.

    Raises:
        TlsError: an invalid ``server.tls.san`` entry (named by index).
    """
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in (socket.gethostname(), socket.getfqdn()):
        if host and _is_dns_name(host) and "*" not in host:
            names.append(x509.DNSName(host.rstrip(".").lower()))
    names += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    listen_san = _listen_host_san(config.server.listen)
    if listen_san is not None:
        names.append(listen_san)
    for i, entry in enumerate(config.server.tls.san):
        names.append(parse_san(entry, f"server.tls.san[{i}]"))
    unique: list[x509.GeneralName] = []
    for name in names:
        if name not in unique:
            unique.append(name)
    return unique


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (must not exist) with exactly ``mode``; O_EXCL so a racing writer or a
    planted symlink makes this fail instead of writing through it.

    Raises:
        FileExistsError: ``path`` exists.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits; set exactly what is intended
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_replace(path: Path, data: bytes, mode: int) -> None:
    """Atomically create or replace ``path`` with ``data`` at ``mode`` (new file + rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600, O_EXCL
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise


def write_private_key(path: Path, pem: bytes, *, replace: bool = False) -> None:
    """Write a private key PEM with mode 0600.

    Args:
        replace: allow replacing an existing key (renewal); otherwise the file must not exist.

    Raises:
        FileExistsError: ``path`` exists and ``replace`` is False.
    """
    (_write_replace if replace else _write_new)(path, pem, KEY_MODE)


def write_certificate(path: Path, pem: bytes) -> None:
    """Create or replace a certificate PEM with mode 0644 (certificates are public)."""
    _write_replace(path, pem, CERT_MODE)


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise TlsError(f"{path}: not a PEM certificate ({exc})") from None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        # never echo the parser's message: it could quote key bytes
        raise TlsError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{path}: Lyra expects an ECDSA private key, found {type(key).__name__}")
    return key


def _mkdir_private(path: Path) -> None:
    if not path.exists():
        path.mkdir(mode=DIR_MODE, parents=True)
        os.chmod(path, DIR_MODE)


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True if ``cert``'s issuer is ``ca``'s subject and its signature verifies with ``ca``'s key."""
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# -- building certificates --------------------------------------------------------------------------
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int, now: dt.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def create_ca(common_name: str | None = None, *, days: int = CA_VALIDITY_DAYS,
              now: dt.datetime | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new self-signed CA (ECDSA P-256, SHA-256) as RFC 5280 describes for a CA certificate.

    Args:
        common_name: subject CN (default ``"Lyra appliance CA <hostname>"``).
        days: validity from now.

    Returns:
        (certificate, private key).
    """
    now = now or utcnow()
    key = _key()
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"{CA_COMMON_NAME_PREFIX} {socket.gethostname()}"[:64]),
    ])
    cert = (_builder(name, name, key.public_key(), days, now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def create_server_certificate(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                              sans: Iterable[x509.GeneralName], *, key: ec.EllipticCurvePrivateKey | None = None,
                              days: int = SERVER_VALIDITY_DAYS, now: dt.datetime | None = None,
                              ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A TLS server certificate signed by the CA (EKU serverAuth, the given SANs).

    Args:
        sans: subjectAltName entries; the first DNS name (else ``localhost``) also becomes the CN.
        key: reuse this key (default: a new P-256 key).

    Returns:
        (certificate, private key).

    Raises:
        TlsError: ``sans`` is empty.
    """
    sans = list(sans)
    if not sans:
        raise TlsError("a server certificate needs at least one subjectAltName")
    now = now or utcnow()
    key = key or _key()
    cn = next((n.value for n in sans if isinstance(n, x509.DNSName) and n.value != "localhost"), "localhost")
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])])
    cert = (_builder(subject, ca_cert.subject, key.public_key(), days, now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def create_client_certificate(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, name: str, *,
                              days: int = CLIENT_VALIDITY_DAYS, now: dt.datetime | None = None,
                              ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A TLS client certificate (EKU clientAuth, CN=name) signed by the CA.

    Raises:
        TlsError: ``name`` is not 1-64 characters of ``A-Z a-z 0-9 . _ @ -`` starting with a letter or digit.
    """
    if not _CLIENT_NAME.match(name or ""):
        raise TlsError(f"client name {name!r}: use 1-64 characters A-Z a-z 0-9 . _ @ - starting with a letter or digit")
    now = now or utcnow()
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (_builder(subject, ca_cert.subject, key.public_key(), days, now)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_leaf_key_usage(), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if _is_dns_name(name) and "*" not in name:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name.lower())]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


# -- the appliance's files --------------------------------------------------------------------------
def ca_key_path(config: LyraConfig) -> Path:
    """The CA private key: ``ca.key`` beside ``server.tls.client_ca``."""
    return config.server.tls.client_ca.with_name("ca.key")


def _load_ca(config: LyraConfig, *, need_key: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | None]:
    tls = config.server.tls
    ca_cert = _load_cert(tls.client_ca)
    key_path = ca_key_path(config)
    if not key_path.exists():
        if need_key:
            raise TlsError(f"{key_path}: the CA private key is missing (moved offline?); put it back to issue "
                           "or renew certificates")
        return ca_cert, None
    ca_key = _load_key(key_path)
    if ca_key.public_key().public_numbers() != ca_cert.public_key().public_numbers():
        raise TlsError(f"{key_path} does not belong to {tls.client_ca}")
    return ca_cert, ca_key


def ensure_tls_material(config: LyraConfig, *, now: dt.datetime | None = None) -> TlsMaterial:
    """Create whatever TLS material is missing; renew the managed server certificate when needed.

    Idempotent: a second call with everything in place changes nothing. Steps:

    1. No ``ca.crt`` and no ``ca.key``: create the CA (logged). One without the other: error
       (never overwrite half of a CA).
    2. No server certificate: issue one (reusing ``server.key`` if that exists alone).
    3. A server certificate issued by the appliance CA ("managed") is re-issued with a new key
       when it expires within :data:`RENEW_BEFORE` (30 days), lacks one of
       :func:`desired_server_sans` (a new ``server.tls.san`` entry, a new host name), or
       the CA was just re-created. Each renewal is logged with its reason.
    4. A server certificate from elsewhere (operator-provided) is never touched; a warning is
       logged when it expires within 30 days.

    Args:
        config: the loaded configuration (paths already resolved against ``data_dir``).
        now: current UTC time (tests); default the wall clock.

    Returns:
        The :class:`TlsMaterial` now on disk.

    Raises:
        TlsError: unreadable / mismatched files, a missing CA key when one is needed, an invalid
            ``server.tls.san`` entry.
        OSError: the files cannot be written.
    """
    now = now or utcnow()
    tls = config.server.tls
    changes: list[str] = []
    wanted = desired_server_sans(config)
    ca_key_file = ca_key_path(config)
    for folder in {tls.client_ca.parent, tls.cert.parent, tls.key.parent}:
        _mkdir_private(folder)

    # 1. the CA
    ca_created = False
    if not tls.client_ca.exists() and not ca_key_file.exists():
        ca_cert, ca_key = create_ca(now=now)
        write_private_key(ca_key_file, _private_pem(ca_key))
        write_certificate(tls.client_ca, ca_cert.public_bytes(serialization.Encoding.PEM))
        ca_created = True
        changes.append("created CA")
        log.info("TLS: created the appliance CA", extra={"ca_cert": str(tls.client_ca),
                                                         "fingerprint_sha256": fingerprint_sha256(ca_cert)})
    elif not tls.client_ca.exists():
        raise TlsError(f"{tls.client_ca} is missing but {ca_key_file} exists; restore ca.crt (or remove both to "
                       "create a new CA, then re-issue every client certificate)")
    ca_cert, ca_key = _load_ca(config, need_key=False)

    # 2.-4. the server certificate
    reason = ""
    existing_key: ec.EllipticCurvePrivateKey | None = None
    if not tls.cert.exists():
        reason = "issued server certificate"
        if tls.key.exists():
            existing_key = _load_key(tls.key)
    else:
        cert = _load_cert(tls.cert)
        if not tls.key.exists():
            if not issued_by(cert, ca_cert):
                raise TlsError(f"{tls.key}: missing (server.tls.key); the certificate {tls.cert} cannot be used without it")
            reason = "re-issued server certificate: its key file was missing"
        elif issued_by(cert, ca_cert):
            missing = [n for n in wanted if n not in _san_list(cert)]
            if not _same_public_key(cert, _load_key(tls.key)):
                reason = "re-issued server certificate: server.key did not match it (interrupted renewal?)"
            elif _not_after(cert) - now <= RENEW_BEFORE:
                reason = f"renewed server certificate: it expires {_not_after(cert).isoformat()}"
            elif missing:
                reason = "re-issued server certificate: new subjectAltName " + ", ".join(_fmt(n) for n in missing)
        elif ca_created and _issuer_cn(cert).startswith(CA_COMMON_NAME_PREFIX):
            reason = "re-issued server certificate: the CA was re-created"
        elif _not_after(cert) - now <= RENEW_BEFORE:
            log.warning("TLS: the server certificate (not issued by the appliance CA) expires soon; replace it",
                        extra={"cert": str(tls.cert), "not_after": _not_after(cert).isoformat()})

    if reason:
        if ca_key is None:
            _, ca_key = _load_ca(config, need_key=True)  # raises with a clear message
        assert ca_key is not None
        server_cert, server_key = create_server_certificate(ca_cert, ca_key, wanted, key=existing_key, now=now)
        if existing_key is None:
            write_private_key(tls.key, _private_pem(server_key), replace=tls.key.exists())
        write_certificate(tls.cert, server_cert.public_bytes(serialization.Encoding.PEM))
        changes.append(reason)
        log.info("TLS: %s", reason, extra={"cert": str(tls.cert), "not_after": _not_after(server_cert).isoformat(),
                                          "sans": list(format_sans(server_cert))})

    server_cert = _load_cert(tls.cert)
    _load_key(tls.key)  # readable and well-formed (content never leaves this function)
    return TlsMaterial(
        ca_cert=tls.client_ca, ca_key=ca_key_file, server_cert=tls.cert, server_key=tls.key,
        ca_fingerprint_sha256=fingerprint_sha256(ca_cert), server_sans=format_sans(server_cert),
        server_not_after=_not_after(server_cert), managed=issued_by(server_cert, ca_cert), changes=tuple(changes),
    )


def describe_tls_material(config: LyraConfig) -> TlsMaterial:
    """What is on disk, without creating or changing anything (``lyrad tls show``).

    Raises:
        TlsError: the CA or server certificate is missing (run ``lyrad init``) or unreadable.
    """
    tls = config.server.tls
    for path, what in ((tls.client_ca, "CA certificate (server.tls.client_ca)"), (tls.cert, "server certificate (server.tls.cert)")):
        if not path.exists():
            raise TlsError(f"{path}: {what} not found; run `lyrad init` to create the TLS material")
    ca_cert = _load_cert(tls.client_ca)
    server_cert = _load_cert(tls.cert)
    return TlsMaterial(
        ca_cert=tls.client_ca, ca_key=ca_key_path(config), server_cert=tls.cert, server_key=tls.key,
        ca_fingerprint_sha256=fingerprint_sha256(ca_cert), server_sans=format_sans(server_cert),
        server_not_after=_not_after(server_cert), managed=issued_by(server_cert, ca_cert),
    )


def issue_client_certificate(config: LyraConfig, name: str, *, days: int = CLIENT_VALIDITY_DAYS) -> tuple[bytes, bytes]:
    """Issue a client certificate for mutual TLS, signed by the appliance CA.

    Args:
        name: the client's name, becomes the subject CN (1-64 of ``A-Z a-z 0-9 . _ @ -``).
        days: validity.

    Returns:
        (certificate PEM, private key PEM - PKCS#8, unencrypted: write it with mode 0600).

    Raises:
        TlsError: no CA (run ``lyrad init``), the CA key is missing, or ``name`` is invalid.
    """
    if not config.server.tls.client_ca.exists():
        raise TlsError(f"{config.server.tls.client_ca}: no CA certificate; run `lyrad init` first")
    ca_cert, ca_key = _load_ca(config, need_key=True)
    assert ca_key is not None
    cert, key = create_client_certificate(ca_cert, ca_key, name, days=days)
    log.info("TLS: issued a client certificate", extra={"client": name, "not_after": _not_after(cert).isoformat(),
                                                       "serial": format(cert.serial_number, "x")})
    return cert.public_bytes(serialization.Encoding.PEM), _private_pem(key)


def server_credentials_pem(config: LyraConfig) -> tuple[bytes, bytes, bytes | None]:
    """The PEM bytes gRPC needs: (server key, server certificate chain, client CA or None).

    The client CA is returned only when ``server.tls.require_client_cert`` is on.

    Raises:
        TlsError: a file is missing.
    """
    tls = config.server.tls
    needed = [(tls.key, "server.tls.key"), (tls.cert, "server.tls.cert")]
    if tls.require_client_cert:
        needed.append((tls.client_ca, "server.tls.client_ca"))
    for path, key in needed:
        if not path.is_file():
            raise TlsError(f"{key}: {path} not found (run `lyrad init` to create the TLS material)")
    return (tls.key.read_bytes(), tls.cert.read_bytes(),
            tls.client_ca.read_bytes() if tls.require_client_cert else None)


def _san_list(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _same_public_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    public = cert.public_key()
    return isinstance(public, ec.EllipticCurvePublicKey) and public.public_numbers() == key.public_key().public_numbers()


def _fmt(name: x509.GeneralName) -> str:
    return f"IP:{name.value}" if isinstance(name, x509.IPAddress) else f"DNS:{name.value}"


def _issuer_cn(cert: x509.Certificate) -> str:
    attrs = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""
