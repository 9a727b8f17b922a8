"""``lyrad``: the appliance daemon's command line.

    lyrad init                    create the data folder, the database, TLS material and the first admin
    lyrad run                     serve the gRPC API and run the paper venue's replay
    lyrad check                   validate the configuration and the dataset, then exit
    lyrad verify                  check the database's consistency (journal, fills, audit chain)
    lyrad user add                create a user (while lyrad is stopped)
    lyrad tls show | issue-client inspect TLS material; issue a client certificate for mutual TLS
    lyrad vault create-key-file   write a key file that unseals the vault at unattended boot

Exit codes: 0 ok, 2 usage/configuration error, 3 dataset missing, 70 internal failure (the
engine stopped to protect state; restart and recovery rebuild it from the database), 1 other.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import resource
import signal
import sys
from pathlib import Path

import click

from appliance import __version__
from appliance.config import ConfigError, LyraConfig, load_config
from appliance.security.permissions import ROLES

ADMIN_PASSWORD_ENV = "LYRA_ADMIN_PASSWORD"
EXIT_FATAL = 70  # EX_SOFTWARE: an internal failure; systemd restarts lyrad and recovery runs


def _load(config_path: str | None) -> LyraConfig:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lyrad")
def main() -> None:
    """Lyra trading appliance daemon."""


@main.command()
@click.option("--config", "config_path", envvar="LYRA_CONFIG", help="Config TOML (default: firmware-config/lyra.toml).")
@click.option("--admin", "admin_username", default="admin", show_default=True, help="Username of the first admin.")
def init(config_path: str | None, admin_username: str) -> None:
    """Create the data folder, the database (all migrations), the first admin and the TLS material.

    The admin's password comes from $LYRA_ADMIN_PASSWORD, or is generated and printed ONCE.
    TLS: the appliance CA and the server certificate are created in <data_dir>/tls/ if missing
    (the CA's SHA-256 fingerprint is printed: check it when you copy ca.crt to a client).
    Running init again is safe: nothing existing is changed, except that a server certificate
    issued by the appliance CA is renewed when it expires within 30 days or lacks a configured SAN.
    """
    from appliance.security.bootstrap import open_auth  # local import: keeps `lyrad --help` fast
    from appliance.store.db import Database
    from appliance.store.journal import Journal

    config = _load(config_path)
    data_dir = config.storage.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    db = Database(config.db_path)
    try:
        journal = Journal(db)
        auth = open_auth(db, journal, config)
        password = os.environ.get(ADMIN_PASSWORD_ENV) or None
        try:
            created, generated = auth.ensure_admin(admin_username, password)
        except Exception as exc:  # ValidationError / PreconditionError: say it plainly
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        click.echo(f"data folder: {data_dir}")
        click.echo(f"database:    {config.db_path} (schema v{db.schema_version()})")
        if not created:
            click.echo(f"admin user {admin_username!r} exists already; nothing changed")
        elif generated:
            click.echo(f"admin user {admin_username!r} created. Password (shown once, store it now):")
            click.echo(generated)
        else:
            click.echo(f"admin user {admin_username!r} created with the password from ${ADMIN_PASSWORD_ENV}")
    finally:
        db.close()
    _init_tls(config)


def _init_tls(config: LyraConfig) -> None:
    """``lyrad init``'s TLS step: ensure the material, print where ca.crt is and its fingerprint."""
    from appliance.security.tls import TlsError, ensure_tls_material

    try:
        material = ensure_tls_material(config)
    except (TlsError, OSError) as exc:
        click.echo(f"error: TLS: {exc}", err=True)
        sys.exit(2)
    for change in material.changes:
        click.echo(f"TLS: {change}")
    click.echo(f"TLS CA:      {material.ca_cert}  (copy it to each client and trust it)")
    click.echo(f"CA SHA-256:  {material.ca_fingerprint_sha256}")
    click.echo(f"server cert: {material.server_cert} (expires {material.server_not_after:%Y-%m-%d})")
    if not config.server.tls.enabled:
        click.echo("TLS is off: the API serves plaintext on loopback; set [server.tls] enabled = true to use it")


@main.group()
def tls() -> None:
    """TLS material: show it, issue client certificates for mutual TLS."""


@tls.command("show")
@click.option("--config", "config_path", envvar="LYRA_CONFIG", help="Config TOML (default: firmware-config/lyra.toml).")
def tls_show(config_path: str | None) -> None:
    """Print the CA fingerprint and the server certificate's SANs and expiry (changes nothing)."""
    from appliance.security.tls import TlsError, describe_tls_material, utcnow

    config = _load(config_path)
    try:
        material = describe_tls_material(config)
    except TlsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    settings = config.server.tls
    days_left = (material.server_not_after - utcnow()).days
    click.echo(f"TLS enabled:      {'yes' if settings.enabled else 'no'}"
               f"{' (client certificates required)' if settings.require_client_cert else ''}")
    click.echo(f"CA certificate:   {material.ca_cert}")
    click.echo(f"CA SHA-256:       {material.ca_fingerprint_sha256}")
    click.echo(f"CA key:           {material.ca_key}{'' if material.ca_key.exists() else ' (absent: offline)'}")
    click.echo(f"server cert:      {material.server_cert}"
               f"{'' if material.managed else ' (not issued by the appliance CA: renew it yourself)'}")
    click.echo(f"server SANs:      {', '.join(material.server_sans) or '(none)'}")
    click.echo(f"server expires:   {material.server_not_after:%Y-%m-%d %H:%M:%S} UTC ({days_left} days)")


@tls.command("issue-client")
@click.option("--config", "config_path", envvar="LYRA_CONFIG", help="Config TOML (default: firmware-config/lyra.toml).")
@click.option("--name", required=True, help="Client name: the certificate's CN (e.g. alice-laptop).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write NAME.crt, NAME.key (0600) and ca.crt into.")
def tls_issue_client(config_path: str | None, name: str, out_dir: Path) -> None:
    """Issue a client certificate + key signed by the appliance CA (for mutual TLS).

    Refuses to overwrite an existing NAME.key or NAME.crt.
    """
    from appliance.security.tls import TlsError, issue_client_certificate, write_certificate, write_private_key

    config = _load(config_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path, ca_path = out_dir / f"{name}.crt", out_dir / f"{name}.key", out_dir / "ca.crt"
    for path in (cert_path, key_path):
        if path.exists():
            click.echo(f"error: {path} exists; choose another --name or --out", err=True)
            sys.exit(2)
    try:
        cert_pem, key_pem = issue_client_certificate(config, name)
        write_private_key(key_path, key_pem)
        write_certificate(cert_path, cert_pem)
        if not ca_path.exists():
            write_certificate(ca_path, config.server.tls.client_ca.read_bytes())
    except (TlsError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"client certificate: {cert_path}")
    click.echo(f"client key:         {key_path} (mode 0600; keep it secret)")
    click.echo(f"CA certificate:     {ca_path}")
    click.echo("use: grpc.ssl_channel_credentials(root_certificates=ca.crt, private_key=key, certificate_chain=crt)")


@main.command()
@click.option("--config", "config_path", envvar="LYRA_CONFIG", help="Config TOML (default: firmware-config/lyra.toml).")
@click.option("--listen", help="Override server.listen (HOST:PORT; port 0 picks a free port).")
@click.option("--metrics-listen", help="Override metrics.listen.")
@click.option("--speed", type=float, help="Override paper.speed (0 = as fast as possible).")
@click.option("--start", type=click.Choice(["first_strategy", "immediately", "manual"]), help="Override paper.start.")
def run(config_path: str | None, listen: str | None, metrics_listen: str | None, speed: float | None, start: str | None) -> None:
    """Serve the API and run the paper venue until SIGTERM/SIGINT.

    Writes <data_dir>/lyrad.json with the bound addresses and the pid once serving.
    """
    from appliance.marketdata.candles import DatasetNotFound
    from appliance.telemetry.logging import setup_logging

    config = _load(config_path)
    if listen:
        config.server.listen = listen
    if metrics_listen:
        config.metrics.listen = metrics_listen
    if speed is not None:
        config.paper.speed = speed
    if start:
        config.paper.start = start
    setup_logging(config.logging.level)
    # no core dumps: one could hold the unsealed vault data key or session secrets
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if not config.db_path.exists():
        click.echo(f"error: no database at {config.db_path}; run `lyrad init` first", err=True)
        sys.exit(2)
    if _lock_data_dir(config) is None:
        click.echo(f"error: another lyrad already runs on {config.storage.data_dir}", err=True)
        sys.exit(2)
    try:
        asyncio.run(_serve(config))
    except DatasetNotFound as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(3)


@main.group()
def user() -> None:
    """Manage users offline (while lyrad is stopped; the API gains user RPCs with the Security issue)."""


@user.command("add")
@click.option("--config", "config_path", envvar="LYRA_CONFIG", help="Config TOML (default: firmware-config/lyra.toml).")
@click.option("--username", required=True)
@click.option("--role", required=True, type=click.Choice(list(ROLES)))
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of prompting.")
def user_add(config_path: str | None, username: str, role: str, password_stdin: bool) -> None:
    """Create a user. Refused while lyrad runs on the same data folder (one writer at a time)."""
    from appliance.security.bootstrap import open_auth
    from appliance.store.db import Database
    from appliance.store.journal import Journal

    config = _load_offline(config_path)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    db = Database(config.db_path)
    try:
        auth = open_auth(db, Journal(db), config)
        try:
            created = auth.users.create_user(username, password, role)
        except Exception as exc:  # ValidationError / AlreadyExistsError: one clear line
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        click.echo(f"user {created.username!r} created with role {created.role}")
    finally:
        db.close()


def _load_offline(config_path: str | None) -> LyraConfig:
    """The config for an offline command: the database must exist and lyrad must not be running
    (one writer at a time); exits 2 with a clear line otherwise."""
    config = _load(config_path)
    if not config.db_path.exists():
        click.echo(f"error: no database at {config.db_path}; run `lyrad init` first", err=True)
        sys.exit(2)
    if _lock_data_dir(config) is None:
        click.echo(f"error: lyrad is running on {config.storage.data_dir}; stop it first", err=True)
        sys.exit(2)
    return config


def _lock_data_dir(config: LyraConfig) -> int | None:
    """Take the data folder's exclusive lock (held until the process exits, even by kill -9).

    Returns:
        The lock's file descriptor, or None when another process holds it.
    """
    fd = os.open(config.storage.data_dir / "lyrad.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@main.command()
@click.option("--config", "config_path", envvar="LYRA_CONFIG", help="Config TOML (default: firmware-config/lyra.toml).")
def check(config_path: str | None) -> None:
    """Validate the configuration and the dataset, print a summary, exit."""
    from appliance.marketdata import candles

    config = _load(config_path)
    p = config.paper
    try:
        files = candles.discover(p.dataset, timeframe=p.timeframe, exchanges=p.exchanges or None, symbols=p.symbols or None)
    except candles.DatasetNotFound as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(3)
    click.echo(f"config:  {config.source}")
    click.echo(f"data:    {config.storage.data_dir}")
    click.echo(f"dataset: {p.dataset} ({len(files)} files, timeframe {p.timeframe})")
    for f in files:
        click.echo(f"  {f.symbol:<12} {f.exchange:<10} {f.path.name}")


@main.group()
def vault() -> None:
    """Vault operations that must run on the box itself (the rest is `lyractl vault ...`)."""


@vault.command("create-key-file")
@click.option("--config", "config_path", envvar="LYRA_CONFIG", help="Config TOML (default: firmware-config/lyra.toml).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the key file (created 0600; must not exist).")
@click.option("--passphrase-stdin", is_flag=True, help="Read the vault passphrase from standard input.")
def vault_create_key_file(config_path: str | None, out_path: Path, passphrase_stdin: bool) -> None:
    """Write a key file that unseals the vault at boot without a passphrase (unattended boot).

    Keep it where only lyrad can read it, e.g. /etc/lyra/vault.key (root:root 0600) handed to
    the service with systemd's LoadCredential=lyra-vault.key:/etc/lyra/vault.key. Anyone holding
    the file and the database can decrypt the exchange credentials.
    """
    from appliance.engine.clock import LiveClock
    from appliance.security.vault import Vault
    from appliance.store.db import Database
    from appliance.store.journal import Journal

    config = _load_offline(config_path)
    passphrase = sys.stdin.readline().rstrip("\n") if passphrase_stdin else click.prompt("vault passphrase", hide_input=True)
    db = Database(config.db_path)
    try:
        store = Vault(db, Journal(db), LiveClock())
        try:
            store.unseal(passphrase, actor="lyrad")
            written = store.create_key_file(out_path, actor="lyrad")
        except Exception as exc:  # LyraError: wrong passphrase, sealed, exists ... one clear line
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        finally:
            if store.state.value == "UNSEALED":
                store.seal(actor="lyrad")
        click.echo(f"key file written to {written} (mode 0600)")
    finally:
        db.close()


@main.command()
@click.option("--config", "config_path", envvar="LYRA_CONFIG", help="Config TOML (default: firmware-config/lyra.toml).")
def verify(config_path: str | None) -> None:
    """Check the database's consistency (journal, orders vs fills, balances vs fills); exit 1 on a problem."""
    from appliance.store.consistency import check_consistency
    from appliance.store.db import Database

    config = _load(config_path)
    if not config.db_path.exists():
        click.echo(f"error: no database at {config.db_path}", err=True)
        sys.exit(2)
    db = Database(config.db_path, readonly=True)
    try:
        problems = check_consistency(db)
    finally:
        db.close()
    for problem in problems:
        click.echo(f"problem: {problem}")
    click.echo("consistent" if not problems else f"{len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


async def _serve(config: LyraConfig) -> None:
    from appliance.app import Appliance
    from appliance.server.app import start_server
    from appliance.telemetry.metrics import serve as serve_metrics

    import logging

    from appliance.venues.ccxt.errors import orphaned_exchange_error_handler

    asyncio.get_running_loop().set_exception_handler(orphaned_exchange_error_handler)
    log = logging.getLogger("lyra.daemon")
    app = Appliance(config)
    notes = app.recover()
    for note in notes:
        log.info("recovery: %s", note)
    app.engine.start()
    server, port = await start_server(app, config.server.listen)
    metrics_port = None
    if config.metrics.enabled:
        _metrics_server, metrics_port = serve_metrics(app.metrics, config.metrics.listen)
    host = config.server.listen.rpartition(":")[0]
    run_file = config.storage.data_dir / "lyrad.json"
    run_file.write_text(json.dumps({
        "pid": os.getpid(), "grpc": f"{host}:{port}",
        "metrics": f"{config.metrics.listen.rpartition(':')[0]}:{metrics_port}" if metrics_port else "",
    }))
    log.info("lyrad %s serving", __version__, extra={"grpc": f"{host}:{port}", "metrics_port": metrics_port,
                                                     "instruments": len(app.instruments), "replay_start": config.paper.start})
    loop = asyncio.get_running_loop()
    for note in await app.start_live_venues():  # later: again when the vault is unsealed
        log.info("venues: %s", note)
    if app.replay_should_autostart():
        app.replay.start()
    elif config.paper.start == "first_strategy" and app.replay is not None:
        log.info("replay waiting: it starts when a strategy is started (or `lyractl replay start`)")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app.engine.on_fatal = lambda exc: stop.set()

    async def refresh_vault_metrics() -> None:
        while True:  # credential ages grow with time, not only with events
            await app.engine.call(app.refresh_vault_metrics)
            await asyncio.sleep(300)

    refresher = loop.create_task(refresh_vault_metrics(), name="lyra-vault-metrics")
    await stop.wait()
    refresher.cancel()
    log.info("shutting down")
    if app.replay is not None:
        await app.replay.stop()
    await app.stop_live_venues()
    await server.stop(grace=2)
    await app.engine.stop()
    app.close()
    run_file.unlink(missing_ok=True)
    if app.engine.fatal is not None:
        sys.exit(EXIT_FATAL)


if __name__ == "__main__":
    main()
