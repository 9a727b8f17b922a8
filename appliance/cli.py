"""``lyrad``: the appliance daemon's command line.

    lyrad init   create the data folder, the database and the first admin
    lyrad run    serve the gRPC API and run the paper venue's replay
    lyrad check  validate the configuration and the dataset, then exit

Exit codes: 0 ok, 2 usage/configuration error, 3 dataset missing, 70 internal failure (the
engine stopped to protect state; restart and recovery rebuild it from the database), 1 other.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import sys
from pathlib import Path

import click

from appliance import __version__
from appliance.config import ConfigError, LyraConfig, load_config

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
    """Create the data folder, the database (all migrations) and the first admin.

    The admin's password comes from $LYRA_ADMIN_PASSWORD, or is generated and printed ONCE.
    Running init again is safe: nothing existing is changed.
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
@click.option("--role", required=True, type=click.Choice(["admin", "trader", "viewer"]))
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of prompting.")
def user_add(config_path: str | None, username: str, role: str, password_stdin: bool) -> None:
    """Create a user. Refused while lyrad runs on the same data folder (one writer at a time)."""
    from appliance.security.bootstrap import open_auth
    from appliance.store.db import Database
    from appliance.store.journal import Journal

    config = _load(config_path)
    if not config.db_path.exists():
        click.echo(f"error: no database at {config.db_path}; run `lyrad init` first", err=True)
        sys.exit(2)
    if _lock_data_dir(config) is None:
        click.echo(f"error: lyrad is running on {config.storage.data_dir}; stop it first", err=True)
        sys.exit(2)
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
    if app.replay_should_autostart():
        app.replay.start()
    elif config.paper.start == "first_strategy":
        log.info("replay waiting: it starts when a strategy is started (or `lyractl replay start`)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app.engine.on_fatal = lambda exc: stop.set()
    await stop.wait()
    log.info("shutting down")
    await app.replay.stop()
    await server.stop(grace=2)
    await app.engine.stop()
    app.close()
    run_file.unlink(missing_ok=True)
    if app.engine.fatal is not None:
        sys.exit(EXIT_FATAL)


if __name__ == "__main__":
    main()
