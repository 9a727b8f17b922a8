"""The real server over TLS and mutual TLS: who gets through the handshake and who does not.

A public RPC (Login with a wrong password) answering UNAUTHENTICATED proves the TLS handshake
succeeded and the call reached the appliance; UNAVAILABLE means the connection was refused.
"""

from __future__ import annotations

import grpc
from cryptography.hazmat.primitives import serialization

from appliance.security import tls
from lyra.v1 import auth_pb2, auth_pb2_grpc

TLS_ON = "[server.tls]\nenabled = true\n"
MTLS_ON = "[server.tls]\nenabled = true\nrequire_client_cert = true\n"


def wrong_login(channel: grpc.Channel) -> grpc.StatusCode:
    """The status of a Login with a wrong password over ``channel``."""
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    try:
        stub.Login(auth_pb2.LoginRequest(username="admin", password="not-the-password-1"), timeout=15)
    except grpc.RpcError as exc:
        return exc.code()
    finally:
        channel.close()
    raise AssertionError("a wrong password was accepted")


def other_ca_pem() -> tuple[bytes, object, object]:
    cert, key = tls.create_ca("Some other CA")
    return cert.public_bytes(serialization.Encoding.PEM), cert, key


def test_tls_server_accepts_clients_trusting_the_appliance_ca_only(appliance_factory):
    running = appliance_factory(extra=TLS_ON)
    settings = running.config.server.tls
    assert settings.client_ca.exists() and settings.cert.exists()  # created at start
    ca = settings.client_ca.read_bytes()

    # trusting the appliance CA: the handshake succeeds, the call reaches the appliance
    assert wrong_login(grpc.secure_channel(running.target, grpc.ssl_channel_credentials(ca))) \
        is grpc.StatusCode.UNAUTHENTICATED
    # by name as well as by IP: the certificate's SANs cover both
    assert wrong_login(grpc.secure_channel(f"localhost:{running.port}", grpc.ssl_channel_credentials(ca))) \
        is grpc.StatusCode.UNAUTHENTICATED
    # plaintext is refused
    assert wrong_login(grpc.insecure_channel(running.target)) is grpc.StatusCode.UNAVAILABLE
    # a client trusting another CA refuses the server
    other, _, _ = other_ca_pem()
    assert wrong_login(grpc.secure_channel(running.target, grpc.ssl_channel_credentials(other))) \
        is grpc.StatusCode.UNAVAILABLE

    # a real session over TLS through the SDK
    from lyra_client.client import LyraClient

    password = running.add_user("alice", "trader")
    with LyraClient(running.target, ca_cert=ca, timeout=30) as client:
        client.login("alice", password)
        assert client.whoami().username == "alice"


def test_mutual_tls_requires_a_client_certificate_from_the_appliance_ca(appliance_factory):
    running = appliance_factory(extra=MTLS_ON)
    ca = running.config.server.tls.client_ca.read_bytes()

    # no client certificate: refused
    assert wrong_login(grpc.secure_channel(running.target, grpc.ssl_channel_credentials(ca))) \
        is grpc.StatusCode.UNAVAILABLE
    # plaintext: refused
    assert wrong_login(grpc.insecure_channel(running.target)) is grpc.StatusCode.UNAVAILABLE

    # a certificate issued by the appliance CA (what `lyrad tls issue-client` writes): accepted
    cert_pem, key_pem = tls.issue_client_certificate(running.config, "alice-laptop")
    credentials = grpc.ssl_channel_credentials(ca, private_key=key_pem, certificate_chain=cert_pem)
    assert wrong_login(grpc.secure_channel(running.target, credentials)) is grpc.StatusCode.UNAUTHENTICATED

    # a client certificate from another CA: refused
    _, other_cert, other_key = other_ca_pem()
    rogue_cert, rogue_key = tls.create_client_certificate(other_cert, other_key, "alice-laptop")
    rogue = grpc.ssl_channel_credentials(
        ca, private_key=rogue_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()),
        certificate_chain=rogue_cert.public_bytes(serialization.Encoding.PEM))
    assert wrong_login(grpc.secure_channel(running.target, rogue)) is grpc.StatusCode.UNAVAILABLE
