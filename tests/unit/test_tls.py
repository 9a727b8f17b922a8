"""TLS material: CA, server and client certificates (RFC 5280 profile), file modes, renewal."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
import stat
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from appliance.config import load_config
from appliance.security import tls


def make_config(tmp_path: Path, extra: str = ""):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "lyra.toml"
    path.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n{extra}\n')
    return load_config(path, env={})


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path, '[server.tls]\nsan = ["lyra.example.com", "192.168.1.50", "[fd00::7]"]\n')


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sans(cert: x509.Certificate) -> list:
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


def eku(cert: x509.Certificate) -> list:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_creates_ca_and_server_certificate_in_data_dir_tls(config):
    material = tls.ensure_tls_material(config)
    folder = config.storage.data_dir / "tls"
    assert material.ca_cert == folder / "ca.crt" and material.ca_key == folder / "ca.key"
    assert material.server_cert == folder / "server.crt" and material.server_key == folder / "server.key"
    assert material.changes == ("created CA", "issued server certificate")
    assert material.managed
    assert mode(folder) == 0o700

    ca = load(material.ca_cert)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey) and ca.public_key().curve.name == "secp256r1"
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign and not usage.value.digital_signature
    assert ca.subject == ca.issuer
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert dt.timedelta(days=3650) <= lifetime <= dt.timedelta(days=3651)

    server = load(material.server_cert)
    server.verify_directly_issued_by(ca)
    assert isinstance(server.public_key(), ec.EllipticCurvePublicKey) and server.public_key().curve.name == "secp256r1"
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert eku(server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert server.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    names = sans(server)
    for expected in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                     x509.IPAddress(ipaddress.ip_address("::1")), x509.DNSName("lyra.example.com"),
                     x509.IPAddress(ipaddress.ip_address("192.168.1.50")), x509.IPAddress(ipaddress.ip_address("fd00::7"))):
        assert expected in names
    assert x509.DNSName(socket.gethostname().lower()) in names
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert dt.timedelta(days=825) <= lifetime <= dt.timedelta(days=826)
    assert material.server_not_after == server.not_valid_after_utc
    assert "DNS:localhost" in material.server_sans and "IP:127.0.0.1" in material.server_sans


def test_server_certificate_validates_as_rfc5280_path_for_each_san(config):
    material = tls.ensure_tls_material(config)
    store = Store([load(material.ca_cert)])
    server = load(material.server_cert)
    for name in (x509.DNSName("localhost"), x509.DNSName("lyra.example.com"),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))):
        chain = PolicyBuilder().store(store).build_server_verifier(name).verify(server, [])
        assert len(chain) == 2
    with pytest.raises(VerificationError):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName("evil.example.com")).verify(server, [])


def test_private_keys_are_0600_and_certificates_0644_whatever_the_umask(config):
    old = os.umask(0)
    try:
        material = tls.ensure_tls_material(config)
    finally:
        os.umask(old)
    assert mode(material.ca_key) == 0o600
    assert mode(material.server_key) == 0o600
    assert mode(material.ca_cert) == 0o644
    assert mode(material.server_cert) == 0o644


def test_certificates_stay_world_readable_under_a_strict_umask(tmp_path):
    old = os.umask(0o077)
    try:
        material = tls.ensure_tls_material(make_config(tmp_path))
    finally:
        os.umask(old)
    assert mode(material.ca_cert) == 0o644 and mode(material.server_key) == 0o600


def test_write_private_key_never_overwrites(tmp_path):
    path = tmp_path / "k.key"
    tls.write_private_key(path, b"one")
    with pytest.raises(FileExistsError):
        tls.write_private_key(path, b"two")
    assert path.read_bytes() == b"one"


def test_idempotent(config):
    first = tls.ensure_tls_material(config)
    before = {p: p.read_bytes() for p in (first.ca_cert, first.ca_key, first.server_cert, first.server_key)}
    second = tls.ensure_tls_material(config)
    assert second.changes == ()
    assert {p: p.read_bytes() for p in before} == before
    assert second.ca_fingerprint_sha256 == first.ca_fingerprint_sha256


def test_fingerprint_is_sha256_of_der_in_openssl_format(config):
    material = tls.ensure_tls_material(config)
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding
    der = load(material.ca_cert).public_bytes(Encoding.DER)
    assert material.ca_fingerprint_sha256.replace(":", "") == hashlib.sha256(der).hexdigest().upper()
    assert material.ca_fingerprint_sha256.count(":") == 31


def test_server_certificate_renewed_within_30_days_of_expiry_and_logged(config, caplog):
    first = tls.ensure_tls_material(config)
    old_cert, old_key = first.server_cert.read_bytes(), first.server_key.read_bytes()
    not_after = first.server_not_after

    assert tls.ensure_tls_material(config, now=not_after - dt.timedelta(days=31)).changes == ()

    caplog.set_level(logging.INFO, logger="lyra.tls")
    later = not_after - dt.timedelta(days=29)
    renewed = tls.ensure_tls_material(config, now=later)
    assert len(renewed.changes) == 1 and renewed.changes[0].startswith("renewed server certificate")
    assert renewed.server_cert.read_bytes() != old_cert
    assert renewed.server_key.read_bytes() != old_key  # a new key with the new certificate
    assert mode(renewed.server_key) == 0o600
    assert renewed.server_not_after > not_after
    assert renewed.ca_fingerprint_sha256 == first.ca_fingerprint_sha256
    assert any("renewed server certificate" in r.getMessage() for r in caplog.records)
    assert "PRIVATE KEY" not in caplog.text


def test_new_san_in_config_reissues_the_server_certificate(tmp_path):
    tls.ensure_tls_material(make_config(tmp_path))
    material = tls.ensure_tls_material(make_config(tmp_path, '[server.tls]\nsan = ["box.lan"]\n'))
    assert material.changes and "DNS:box.lan" in material.changes[0]
    assert "DNS:box.lan" in material.server_sans


def test_mismatched_server_key_is_repaired(config):
    material = tls.ensure_tls_material(config)
    material.server_key.unlink()
    tls.write_private_key(material.server_key, tls._private_pem(ec.generate_private_key(ec.SECP256R1())))
    repaired = tls.ensure_tls_material(config)
    assert repaired.changes and "did not match" in repaired.changes[0]
    cert = load(repaired.server_cert)
    key = tls._load_key(repaired.server_key)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


def test_operator_provided_certificate_is_never_touched(config, caplog):
    tls.ensure_tls_material(config)
    other_ca, other_key = tls.create_ca("Someone else's CA")
    cert, key = tls.create_server_certificate(other_ca, other_key, [x509.DNSName("box.example.org")], days=10)
    paths = config.server.tls
    tls.write_certificate(paths.cert, cert.public_bytes(tls.serialization.Encoding.PEM))
    paths.key.unlink()
    tls.write_private_key(paths.key, tls._private_pem(key))
    before = paths.cert.read_bytes()
    caplog.set_level(logging.WARNING, logger="lyra.tls")
    material = tls.ensure_tls_material(config)
    assert material.changes == () and not material.managed
    assert paths.cert.read_bytes() == before
    assert "expires soon" in caplog.text


def test_ca_key_may_be_offline_until_a_certificate_must_be_issued(config):
    material = tls.ensure_tls_material(config)
    offline = material.ca_key.read_bytes()
    material.ca_key.unlink()
    assert tls.ensure_tls_material(config).changes == ()  # nothing to sign: fine
    with pytest.raises(tls.TlsError, match="CA private key is missing"):
        tls.ensure_tls_material(config, now=material.server_not_after - dt.timedelta(days=1))
    with pytest.raises(tls.TlsError, match="CA private key is missing"):
        tls.issue_client_certificate(config, "alice")
    tls.write_private_key(material.ca_key, offline)
    tls.issue_client_certificate(config, "alice")


def test_half_a_ca_is_refused_not_overwritten(config):
    material = tls.ensure_tls_material(config)
    material.ca_cert.unlink()
    key = material.ca_key.read_bytes()
    with pytest.raises(tls.TlsError, match="ca.crt is missing"):
        tls.ensure_tls_material(config)
    assert material.ca_key.read_bytes() == key


def test_invalid_san_names_the_key(tmp_path):
    config = make_config(tmp_path, '[server.tls]\nsan = ["ok.example.com", "not a name!"]\n')
    with pytest.raises(tls.TlsError, match=r"server\.tls\.san\[1\]"):
        tls.ensure_tls_material(config)


def test_listen_address_beyond_loopback_is_added_as_san(tmp_path):
    config = make_config(tmp_path, '[server]\nlisten = "10.1.2.3:7443"\n[server.tls]\nenabled = true\n')
    assert "IP:10.1.2.3" in tls.ensure_tls_material(config).server_sans
    wildcard = make_config(tmp_path / "w", '[server]\nlisten = "0.0.0.0:7443"\n[server.tls]\nenabled = true\n')
    assert x509.IPAddress(ipaddress.ip_address("0.0.0.0")) not in tls.desired_server_sans(wildcard)


def test_client_certificate_has_client_auth_and_cn(config):
    tls.ensure_tls_material(config)
    cert_pem, key_pem = tls.issue_client_certificate(config, "alice-laptop")
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = load(config.server.tls.client_ca)
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice-laptop"
    assert eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = tls.serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    verifier = PolicyBuilder().store(Store([ca])).build_client_verifier()
    assert verifier.verify(cert, []).chain[-1] == ca
    # a client certificate is not a server certificate
    with pytest.raises(VerificationError):
        PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName("alice-laptop")).verify(cert, [])


@pytest.mark.parametrize("name", ["", "-x", "a b", "../etc/passwd", "x" * 65, "名前"])
def test_client_name_is_validated(config, name):
    tls.ensure_tls_material(config)
    with pytest.raises(tls.TlsError, match="client name"):
        tls.issue_client_certificate(config, name)


def test_describe_does_not_create_anything(config):
    with pytest.raises(tls.TlsError, match="lyrad init"):
        tls.describe_tls_material(config)
    assert not (config.storage.data_dir / "tls" / "ca.crt").exists()
    created = tls.ensure_tls_material(config)
    shown = tls.describe_tls_material(config)
    assert shown.ca_fingerprint_sha256 == created.ca_fingerprint_sha256 and shown.server_sans == created.server_sans


def test_cli_init_prints_fingerprint_and_tls_show_issue_client(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from appliance.cli import main

    config_path = tmp_path / "lyra.toml"
    config_path.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    monkeypatch.setenv("LYRA_ADMIN_PASSWORD", "admin-password-123")
    runner = CliRunner()
    result = runner.invoke(main, ["init", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    fingerprint = tls.describe_tls_material(load_config(config_path, env={})).ca_fingerprint_sha256
    assert fingerprint in result.output and str(tmp_path / "data" / "tls" / "ca.crt") in result.output

    shown = runner.invoke(main, ["tls", "show", "--config", str(config_path)])
    assert shown.exit_code == 0, shown.output
    assert fingerprint in shown.output and "DNS:localhost" in shown.output and "IP:127.0.0.1" in shown.output
    assert "server expires" in shown.output

    out = tmp_path / "client"
    issued = runner.invoke(main, ["tls", "issue-client", "--config", str(config_path), "--name", "bob", "--out", str(out)])
    assert issued.exit_code == 0, issued.output
    assert mode(out / "bob.key") == 0o600 and mode(out / "bob.crt") == 0o644
    assert (out / "ca.crt").read_bytes() == (tmp_path / "data" / "tls" / "ca.crt").read_bytes()
    assert "PRIVATE KEY" not in issued.output
    again = runner.invoke(main, ["tls", "issue-client", "--config", str(config_path), "--name", "bob", "--out", str(out)])
    assert again.exit_code == 2 and "exists" in again.output


async def test_start_server_refuses_plaintext_beyond_loopback(tmp_path):
    from appliance.server.app import _bind

    config = make_config(tmp_path)  # TLS disabled; --listen could still ask for 0.0.0.0
    server = grpc.aio.server()
    with pytest.raises(RuntimeError, match="beyond loopback"):
        _bind(server, config, "0.0.0.0:0")
    assert _bind(server, config, "127.0.0.1:0") > 0
    await server.stop(None)
