"""lyractl: command-line control of a Lyra appliance (click + rich).

Every command talks to the appliance's gRPC API through :class:`lyra_client.LyraClient`.
Human-readable tables by default; ``--json`` prints one JSON document on stdout (``orders
watch`` prints one JSON document per line), with decimals kept as strings, enums as short
names (``"OPEN"``) and times as RFC 3339 UTC strings.

Errors are one line on stderr (``error: PERMISSION_DENIED: ...``) and the exit code tells the
class of failure (see :data:`EXIT_CODES_HELP`).

Secrets: passwords, vault passphrases and exchange API secrets are read from a hidden prompt,
stdin (``--password-stdin``, ``--passphrase-stdin``, ``--from-stdin``) or the environment,
never from command-line arguments (argv is visible in ``ps`` and shell history); commands that
read secrets refuse extra arguments without echoing them. Secrets and tokens are never printed
or stored, with two deliberate one-time exceptions: the TOTP secret at enrollment and a new
service-account token at creation.

Profiles (``tokens.json``, mode 0600) hold the target, the TLS file *paths* and the session's
token pair; ``LYRA_TOKEN`` / ``--token-file`` send a service-account token instead.
"""

from __future__ import annotations

import datetime as _dt
import io
import ipaddress
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click
import grpc
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lyra.v1 import orders_pb2

from .client import DEFAULT_TARGET, RISK_LIMIT_FIELDS, ROLES, LyraClient, _client_version, channel_credentials
from .config import TokenStore
from .convert import enum_choices, enum_value, to_decimal_str, to_dict
from .errors import LyraError, MfaRequired, ResourceExhausted

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_SERVER = 4
EXIT_UNAVAILABLE = 5
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  2  usage error (bad option, argument or local configuration)
  3  not authenticated (log in again) or permission denied
  4  other server error (invalid argument, rejected by risk, not found, rate
     limited (RESOURCE_EXHAUSTED, "retry after N s"), data integrity failure
     (DATA_LOSS), broken audit chain, ...)
  5  server unavailable or not answering in time

\b
Environment:
  LYRA_TARGET            host:port of the appliance (default 127.0.0.1:7443)
  LYRA_PASSWORD          password for `lyractl login` and `totp enroll` (scripts)
  LYRA_CONFIG_DIR        directory of tokens.json (default: the user config dir)
  LYRA_CA_CERT           CA certificate (PEM) to connect with TLS
  LYRA_CLIENT_CERT       client certificate (PEM) for mTLS
  LYRA_CLIENT_KEY        client private key (PEM) for mTLS
  LYRA_TOKEN             service-account token (lyst_...) to send instead of the
                         profile's session
  LYRA_VAULT_PASSPHRASE  vault passphrase for `vault init|unseal|passphrase`
  LYRA_VAULT_NEW_PASSPHRASE  new passphrase for `vault passphrase`
"""


def _exit_code_for(err: LyraError) -> int:
    if err.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return EXIT_AUTH
    if err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return EXIT_UNAVAILABLE
    return EXIT_SERVER


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _error_line(err: LyraError, target: str | None, *, service_token: bool = False,
                mfa_enrollment_required: bool = False) -> str:
    """The one stderr line for a failed call, with a hint for what to do next."""
    line = f"error: {err.code.name}: {_one_line(err.message)}"
    if err.reject_rule:
        line += f" (reject rule: {_one_line(err.reject_rule)})"
    if isinstance(err, MfaRequired):
        line += " (a second factor is required: --totp CODE or --recovery-code CODE)"
    elif err.code == grpc.StatusCode.UNAUTHENTICATED:
        line += (" (service token rejected: expired or revoked?)" if service_token
                 else " (run `lyractl login`)")
    elif err.code == grpc.StatusCode.UNAVAILABLE and target:
        line += f" (target {target})"
    elif isinstance(err, ResourceExhausted):
        retry = err.retry_after_s
        line += f" (retry after {_format_seconds(retry)} s)" if retry is not None else " (retry later)"
    elif err.code == grpc.StatusCode.DATA_LOSS:
        line += " (stored data failed its integrity check: possible tampering)"
    if mfa_enrollment_required and err.code in (grpc.StatusCode.PERMISSION_DENIED,
                                                grpc.StatusCode.FAILED_PRECONDITION):
        line += " (TOTP enrollment required: run `lyractl totp enroll`)"
    return line


def _is_loopback(target: str) -> bool:
    """Whether ``target`` (host:port, [v6]:port, unix:...) stays on this machine."""
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    host = target.rsplit(":", 1)[0] if target.count(":") == 1 or target.startswith("[") else target
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _warn_if_shared(path: str, what: str) -> None:
    """Warn (stderr) if a file holding a key or token is readable by other users."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if mode & 0o077:
        click.echo(f"warning: {what} {path} is accessible by other users (run: chmod 600 {path})", err=True)


# --------------------------------------------------------------------------- state


#: Profile keys that hold TLS settings (file paths, and the expected server name).
TLS_KEYS = ("ca_cert", "client_cert", "client_key", "tls_server_name")


@dataclass
class State:
    """Options shared by all commands, and the lazily created client."""

    target_option: str | None
    json: bool
    profile: str
    ca_cert: str | None
    timeout: float
    client_cert: str | None = None
    client_key: str | None = None
    tls_server_name: str | None = None
    token_file: str | None = None
    _client: LyraClient | None = field(default=None, repr=False)
    _store: TokenStore | None = field(default=None, repr=False)
    _uses_service_token: bool = field(default=False, repr=False)

    @property
    def store(self) -> TokenStore:
        if self._store is None:
            self._store = TokenStore()
        return self._store

    def entry(self) -> dict[str, Any]:
        return self.store.get(self.profile)

    @property
    def target(self) -> str:
        """--target / LYRA_TARGET, else the profile's stored target, else the default."""
        if self.target_option:
            return self.target_option
        stored = self.entry().get("target")
        return str(stored) if stored else DEFAULT_TARGET

    def tls_settings(self) -> dict[str, str]:
        """Effective TLS settings: each of --ca-cert/--client-cert/--client-key/
        --tls-server-name (or their env vars), else the profile's stored value when the
        profile belongs to the effective target. Paths are absolute."""
        explicit = {"ca_cert": self.ca_cert, "client_cert": self.client_cert, "client_key": self.client_key,
                    "tls_server_name": self.tls_server_name}
        entry = self.entry()
        stored = entry if entry.get("target") == self.target else {}
        out: dict[str, str] = {}
        for key in TLS_KEYS:
            value = explicit[key] or stored.get(key)
            if value:
                value = str(value)
                out[key] = value if key == "tls_server_name" else os.path.abspath(os.path.expanduser(value))
        return out

    def credentials(self) -> grpc.ChannelCredentials | None:
        """Channel credentials from :meth:`tls_settings`; ``None`` = plaintext.

        Raises: ``click.UsageError`` for an unreadable file or a lone client cert/key.
        """
        tls = self.tls_settings()
        if not any(tls.get(k) for k in ("ca_cert", "client_cert", "client_key")):
            if tls.get("tls_server_name"):
                raise click.UsageError("--tls-server-name needs TLS (--ca-cert)")
            return None
        if bool(tls.get("client_cert")) != bool(tls.get("client_key")):
            raise click.UsageError("--client-cert and --client-key go together (mTLS)")
        if tls.get("client_key"):
            _warn_if_shared(tls["client_key"], "client key")
        try:
            return channel_credentials(tls.get("ca_cert"), tls.get("client_cert"), tls.get("client_key"))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None

    def service_token(self) -> str | None:
        """The service-account token from --token-file, else env LYRA_TOKEN, else None."""
        if self.token_file:
            _warn_if_shared(self.token_file, "token file")
            try:
                with open(self.token_file, encoding="utf-8") as fh:
                    token = fh.read().strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not text"
                raise click.UsageError(f"--token-file {self.token_file}: cannot read ({reason})") from None
            if not token:
                raise click.UsageError(f"--token-file {self.token_file}: empty")
            return token
        token = os.environ.get("LYRA_TOKEN", "").strip()
        return token or None

    def client(self, *, with_tokens: bool = True, allow_service_token: bool = True) -> LyraClient:
        """A client for the effective target and TLS settings.

        With a service token (--token-file / LYRA_TOKEN) and ``allow_service_token``, that
        token is sent and the profile's session is not used. Otherwise stored tokens are used
        only when they were issued by that same target (never sent to another server);
        rotated tokens are written back to the profile."""
        if self._client is not None:
            return self._client
        target = self.target
        credentials = self.credentials()
        service = self.service_token() if (with_tokens and allow_service_token) else None
        access = refresh = None
        if with_tokens and service is None:
            entry = self.entry()
            if entry.get("target") == target:
                access, refresh = entry.get("access_token"), entry.get("refresh_token")
        if credentials is None and not _is_loopback(target):
            click.echo(f"warning: connecting to {target} without TLS: credentials cross the network in "
                       "plaintext (use --ca-cert, or an SSH tunnel to 127.0.0.1)", err=True)

        def persist(access_token: str, refresh_token: str) -> None:
            self.store.update_tokens(self.profile, access_token, refresh_token)

        try:
            self._client = LyraClient(
                target,
                access_token=access,
                refresh_token=refresh,
                on_tokens=persist if (with_tokens and service is None) else None,
                timeout=self.timeout,
                credentials=credentials,
                tls_server_name=self.tls_settings().get("tls_server_name"),
                service_token=service,
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        self._uses_service_token = service is not None
        click.get_current_context().call_on_close(self._client.close)
        return self._client


pass_state = click.make_pass_decorator(State)


# --------------------------------------------------------------------------- output


def _console() -> Console:
    stdout = sys.stdout
    console = Console(file=stdout, highlight=False)
    if not console.is_terminal:
        console = Console(file=stdout, highlight=False, width=200)
    return console


def _cell(value: Any) -> Text:
    if value is None:
        return Text("")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, dict):
        return Text(", ".join(f"{k}={v}" for k, v in value.items()))
    if isinstance(value, list):
        return Text(", ".join(str(v) for v in value))
    return Text(str(value))


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(not isinstance(v, (dict, list)) for v in value.values()) and (
            key in ("params",)
        ):
            rows.append((name, value))
        elif isinstance(value, dict):
            rows.extend(_flatten(value, name + "."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            continue  # tables of sub-items are rendered separately
        else:
            rows.append((name, value))
    return rows


def print_kv(data: dict[str, Any], title: str | None = None) -> None:
    """Two-column field/value table of a (flattened) dict."""
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in _flatten(data):
        table.add_row(Text(key), _cell(value))
    _console().print(table)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], title: str | None = None) -> None:
    """Table of ``rows`` (dicts) with ``columns`` = [(key, header)]; prints "(none)" if empty."""
    console = _console()
    if not rows:
        console.print(Text(f"{title + ': ' if title else ''}(none)"))
        return
    table = Table(title=title)
    for _, header in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*[_cell(row.get(key)) for key, _ in columns])
    console.print(table)


def emit(state: State, data: Any, render: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON (``--json``) or through ``render``."""
    if state.json:
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    else:
        render(data)


ORDER_COLUMNS = [
    ("client_order_id", "ID"),
    ("instrument", "Instrument"),
    ("side", "Side"),
    ("type", "Type"),
    ("qty", "Qty"),
    ("limit_price", "Price"),
    ("status", "Status"),
    ("filled_qty", "Filled"),
    ("avg_fill_price", "Avg price"),
    ("strategy_id", "Strategy"),
    ("create_time", "Created"),
]
FILL_COLUMNS = [
    ("fill_id", "Fill"),
    ("client_order_id", "Order"),
    ("instrument", "Instrument"),
    ("side", "Side"),
    ("qty", "Qty"),
    ("price", "Price"),
    ("fee", "Fee"),
    ("fee_asset", "Fee asset"),
    ("liquidity", "Liq"),
    ("time", "Time"),
]
STRATEGY_COLUMNS = [
    ("strategy_id", "ID"),
    ("type", "Type"),
    ("instruments", "Instruments"),
    ("status", "Status"),
    ("params", "Params"),
    ("last_error", "Last error"),
]


# --------------------------------------------------------------------------- parameter helpers


def _split_multi(values: Iterable[str]) -> list[str]:
    """Flatten repeatable options that may also hold comma-separated lists."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _decimal_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return to_decimal_str(value, field=param.name or "value")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _key_values(values: Iterable[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint=option)
        out[key.strip()] = value.strip()
    return out


def _iso_datetime(ctx: click.Context, param: click.Parameter, value: str | None) -> _dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r} (e.g. 2018-01-10T04:55:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)


# --------------------------------------------------------------------------- root group


class LyraGroup(click.Group):
    """Root group: maps SDK errors to one stderr line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LyraError as err:
            state = ctx.obj if isinstance(ctx.obj, State) else None
            target = None
            enrolling = False
            if state is not None:
                try:
                    target = state.target
                except Exception:
                    target = state.target_option
                if not state._uses_service_token:
                    try:
                        enrolling = bool(state.entry().get("mfa_enrollment_required"))
                    except Exception:
                        enrolling = False
            service = bool(state is not None and state._uses_service_token)
            click.echo(_error_line(err, target, service_token=service, mfa_enrollment_required=enrolling), err=True)
            ctx.exit(_exit_code_for(err))
        except ValueError as err:  # argument validation in the SDK or a bad local config file
            click.echo(f"error: {_one_line(str(err))}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            ctx.exit(EXIT_INTERRUPTED)


def _fail_usage(message: str) -> NoReturn:
    raise click.UsageError(message)


@click.group(
    cls=LyraGroup,
    epilog=EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--target", envvar="LYRA_TARGET", default=None, metavar="HOST:PORT",
              help=f"Appliance gRPC address [env LYRA_TARGET; default: the profile's, else {DEFAULT_TARGET}].")
@click.option("--json", "json_output", is_flag=True, help="Machine output: one JSON document on stdout.")
@click.option("--profile", default="default", show_default=True, help="Credential profile in tokens.json.")
@click.option("--ca-cert", envvar="LYRA_CA_CERT", default=None, type=click.Path(dir_okay=False),
              help="CA certificate (PEM): connect with TLS [env LYRA_CA_CERT; default: the profile's].")
@click.option("--client-cert", envvar="LYRA_CLIENT_CERT", default=None, type=click.Path(dir_okay=False),
              help="Client certificate (PEM) for mTLS [env LYRA_CLIENT_CERT; default: the profile's].")
@click.option("--client-key", envvar="LYRA_CLIENT_KEY", default=None, type=click.Path(dir_okay=False),
              help="Client private key (PEM) for mTLS [env LYRA_CLIENT_KEY; default: the profile's].")
@click.option("--tls-server-name", default=None, metavar="NAME",
              help="Name expected in the server certificate, if not the target's host.")
@click.option("--token-file", default=None, type=click.Path(dir_okay=False),
              help="File holding a service-account token to send instead of the profile's session "
                   "[or env LYRA_TOKEN].")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Per-call deadline in seconds.")
@click.version_option(_client_version(), "--version", prog_name="lyractl", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, target: str | None, json_output: bool, profile: str, ca_cert: str | None,
        client_cert: str | None, client_key: str | None, tls_server_name: str | None, token_file: str | None,
        timeout: float) -> None:
    """Control a Lyra trading appliance over its authenticated gRPC API."""
    ctx.obj = State(target_option=target or None, json=json_output, profile=profile, ca_cert=ca_cert,
                    timeout=timeout, client_cert=client_cert, client_key=client_key,
                    tls_server_name=tls_server_name, token_file=token_file)


# --------------------------------------------------------------------------- secrets


class NoArgvSecretsCommand(click.Command):
    """A command that reads secrets: it refuses unexpected positional arguments *without
    echoing them* (a secret typed on the command line is visible in ``ps`` and in the shell
    history, and click's own message would print it again)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = dict(kwargs.pop("context_settings", None) or {})
        settings["allow_extra_args"] = True
        super().__init__(*args, context_settings=settings, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        if ctx.args:
            raise click.UsageError(
                f"unexpected argument ({len(ctx.args)} not shown): secrets are never accepted on the command "
                "line, where ps and the shell history expose them; use the hidden prompt or the stdin/"
                "environment options (see --help)", ctx=ctx)
        return rest


def _stdin_line(what: str, option: str) -> str:
    """Next line of stdin (without the newline); usage error if missing or empty."""
    line = sys.stdin.readline()
    value = line.rstrip("\r\n")
    if not value:
        _fail_usage(f"{option}: no {what} on stdin")
    return value


def _read_secret(what: str, *, from_stdin: bool = False, option: str = "", env: str | None = None,
                 confirm: bool = False) -> str:
    """A secret from stdin (``from_stdin``), else env ``env``, else a hidden prompt on stderr
    (asked twice when ``confirm``). Never echoed, never stored."""
    if from_stdin:
        return _stdin_line(what, option)
    if env and os.environ.get(env):
        return os.environ[env]
    prompt = what[:1].upper() + what[1:]
    value = click.prompt(prompt, hide_input=True, err=True,
                         confirmation_prompt=f"Repeat {what}" if confirm else False)
    if not value:
        _fail_usage(f"{what}: empty")
    return value


def _read_password(from_stdin: bool) -> str:
    """The caller's password: --password-stdin, else LYRA_PASSWORD, else a hidden prompt."""
    return _read_secret("password", from_stdin=from_stdin, option="--password-stdin", env="LYRA_PASSWORD")


# --------------------------------------------------------------------------- auth

_TOTP_RE = re.compile(r"^\d{6,8}$")
MFA_ENROLL_NOTICE = ("TOTP enrollment is required for this account: until it is confirmed this session can only "
                     "enroll, change the password or log out. Run `lyractl totp enroll`.")


@cli.command(cls=NoArgvSecretsCommand)
@click.option("--target", "login_target", default=None, metavar="HOST:PORT",
              help="Appliance address to log in to (same as the global --target).")
@click.option("--ca-cert", "login_ca_cert", default=None, type=click.Path(dir_okay=False),
              help="CA certificate (PEM) of the appliance: use TLS; its path is saved in the profile.")
@click.option("--client-cert", "login_client_cert", default=None, type=click.Path(dir_okay=False),
              help="Client certificate (PEM) for mTLS; its path is saved in the profile.")
@click.option("--client-key", "login_client_key", default=None, type=click.Path(dir_okay=False),
              help="Client private key (PEM) for mTLS; its path (not the key) is saved in the profile.")
@click.option("--tls-server-name", "login_tls_server_name", default=None, metavar="NAME",
              help="Name expected in the server certificate, if not the target's host (saved).")
@click.option("--profile", "login_profile", default=None, help="Profile to save (same as the global --profile).")
@click.option("--username", "-u", envvar="LYRA_USERNAME", default=None, help="User name (prompted if omitted).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--totp", "totp_code", default="", metavar="CODE",
              help="TOTP code (otherwise prompted for if the server asks for one).")
@click.option("--recovery-code", default="", metavar="CODE", help="One-time recovery code instead of a TOTP code.")
@pass_state
def login(state: State, login_target: str | None, login_ca_cert: str | None, login_client_cert: str | None,
          login_client_key: str | None, login_tls_server_name: str | None, login_profile: str | None,
          username: str | None, password_stdin: bool, totp_code: str, recovery_code: str) -> None:
    """Log in and store the session in the profile (tokens.json, mode 0600).

    The password is read from stdin (--password-stdin), else from LYRA_PASSWORD, else
    prompted without echo. It is never stored. If the user has TOTP enrolled the code is
    prompted for ("TOTP code:"; a code that is not 6-8 digits is sent as a recovery code)
    unless --totp or --recovery-code is given.

    The profile keeps the target and the paths of --ca-cert/--client-cert/--client-key, so
    later commands only need --profile NAME:

    \b
      lyractl login --target lyra.example:7443 --ca-cert ca.pem \\
          --client-cert me.crt --client-key me.key --profile prod -u alice
      lyractl --profile prod status
    """
    if login_target:
        state.target_option = login_target
    if login_profile:
        state.profile = login_profile
    for key, value in (("ca_cert", login_ca_cert), ("client_cert", login_client_cert),
                       ("client_key", login_client_key), ("tls_server_name", login_tls_server_name)):
        if value:
            setattr(state, key, value)
    if totp_code and recovery_code:
        _fail_usage("--totp and --recovery-code: give one or the other")
    if not username:
        username = click.prompt("Username", err=True)
    password = _read_password(password_stdin)
    target = state.target
    tls = state.tls_settings()
    client = state.client(with_tokens=False)
    try:
        resp = client.login(username, password, totp_code=totp_code, recovery_code=recovery_code)
    except MfaRequired:
        if totp_code or recovery_code:
            raise  # the code given was wrong
        try:
            code = click.prompt("TOTP code", err=True).strip()
        except click.Abort:
            click.echo("error: a TOTP code is required: pass --totp CODE or --recovery-code CODE", err=True)
            click.get_current_context().exit(EXIT_AUTH)
        if _TOTP_RE.match(code):
            resp = client.login(username, password, totp_code=code)
        else:
            resp = client.login(username, password, recovery_code=code)
    expires = to_dict(resp)["access_expires_at"]
    entry: dict[str, Any] = {
        "target": target,
        "username": resp.username or username,
        "role": resp.role,
        "access_token": resp.access_token,
        "refresh_token": resp.refresh_token,
        "access_expires_at": expires,
    }
    entry.update(tls)
    if resp.mfa_enrollment_required:
        entry["mfa_enrollment_required"] = True
    state.store.save(state.profile, entry)
    result: dict[str, Any] = {"username": resp.username or username, "role": resp.role, "target": target,
                              "profile": state.profile, "access_expires_at": expires}
    if resp.mfa_enrollment_required:
        result["mfa_enrollment_required"] = True
    emit(state, result, lambda d: _console().print(Text(
        f"Logged in to {d['target']} as {d['username']} ({d['role']}); profile {d['profile']!r} saved in "
        f"{state.store.path}")))
    if resp.mfa_enrollment_required:
        click.echo(MFA_ENROLL_NOTICE, err=True)


@cli.command()
@pass_state
def logout(state: State) -> None:
    """Revoke the session on the server and forget the profile's tokens (the profile's
    target and TLS paths are forgotten too)."""
    entry = state.entry()
    warning = None
    if entry.get("refresh_token") and entry.get("target") == state.target:
        try:
            state.client(allow_service_token=False).logout()
        except LyraError as err:
            warning = f"warning: server logout failed ({err.code.name}: {_one_line(err.message)}); local tokens removed"
    existed = state.store.delete(state.profile)
    if warning:
        click.echo(warning, err=True)
    emit(state, {"logged_out": existed, "profile": state.profile},
         lambda d: _console().print(Text(f"Logged out (profile {d['profile']!r})" if d["logged_out"]
                                         else f"Not logged in (profile {d['profile']!r})")))


@cli.command()
@pass_state
def profiles(state: State) -> None:
    """List the saved profiles: target, user, role and TLS paths (never tokens)."""
    rows = []
    for name, entry in state.store.profiles().items():
        rows.append({
            "profile": name,
            "active": name == state.profile,
            "target": entry.get("target", ""),
            "username": entry.get("username", ""),
            "role": entry.get("role", ""),
            "logged_in": bool(entry.get("refresh_token")),
            "access_expires_at": entry.get("access_expires_at"),
            "ca_cert": entry.get("ca_cert", ""),
            "client_cert": entry.get("client_cert", ""),
            "client_key": entry.get("client_key", ""),
            "tls_server_name": entry.get("tls_server_name", ""),
            "mfa_enrollment_required": bool(entry.get("mfa_enrollment_required")),
        })
    emit(state, {"profiles": rows}, lambda d: print_table(d["profiles"], [
        ("profile", "Profile"), ("active", "Active"), ("target", "Target"), ("username", "User"),
        ("role", "Role"), ("logged_in", "Logged in"), ("ca_cert", "CA cert"), ("client_cert", "Client cert"),
        ("client_key", "Client key"), ("mfa_enrollment_required", "TOTP enrollment due")]))


@cli.command()
@pass_state
def whoami(state: State) -> None:
    """Show the logged-in user, role and permissions."""
    data = to_dict(state.client().whoami())
    emit(state, data, print_kv)


# --------------------------------------------------------------------------- admin


@cli.command()
@pass_state
def status(state: State) -> None:
    """Server state, mode, clock, journal position and replay progress."""
    data = to_dict(state.client().get_status())
    emit(state, data, print_kv)


@cli.command()
@pass_state
def version(state: State) -> None:
    """Client and server versions."""
    resp = state.client().get_version()
    data = {"client_version": _client_version(), "server_version": resp.version,
            "schema_version": resp.schema_version}
    emit(state, data, print_kv)


@cli.group()
def replay() -> None:
    """Replay control (replay mode only)."""


@replay.command("status")
@pass_state
def replay_status(state: State) -> None:
    """Replay state and progress."""
    emit(state, to_dict(state.client().get_replay_progress()), print_kv)


@replay.command("start")
@pass_state
def replay_start(state: State) -> None:
    """Start or resume the replay."""
    emit(state, to_dict(state.client().start_replay()), print_kv)


@replay.command("pause")
@pass_state
def replay_pause(state: State) -> None:
    """Pause the replay."""
    emit(state, to_dict(state.client().pause_replay()), print_kv)


# --------------------------------------------------------------------------- portfolio


@cli.command()
@click.option("--venue", default="", help="Only this venue.")
@pass_state
def balances(state: State, venue: str) -> None:
    """Balances per asset: total, reserved (by open orders), free."""
    data = to_dict(state.client().list_balances(venue))
    emit(state, data, lambda d: print_table(d["balances"], [
        ("venue", "Venue"), ("asset", "Asset"), ("total", "Total"), ("reserved", "Reserved"), ("free", "Free")]))


@cli.command()
@click.option("--instrument", default="", help="Only this instrument (SYMBOL@VENUE).")
@click.option("--all", "include_flat", is_flag=True, help="Include flat positions.")
@pass_state
def positions(state: State, instrument: str, include_flat: bool) -> None:
    """Open positions with PnL (amounts in the instrument's quote currency)."""
    data = to_dict(state.client().list_positions(instrument, include_flat=include_flat))
    emit(state, data, lambda d: print_table(d["positions"], [
        ("instrument", "Instrument"), ("qty", "Qty"), ("avg_price", "Avg price"), ("mark_price", "Mark"),
        ("unrealized_pnl", "Unrealized"), ("realized_pnl", "Realized"), ("fees", "Fees"),
        ("notional", "Notional"), ("currency", "Ccy")]))


@cli.command()
@pass_state
def pnl(state: State) -> None:
    """NAV and PnL (in the NAV currency) with a per-instrument breakdown."""
    data = to_dict(state.client().get_pnl())

    def render(d: dict[str, Any]) -> None:
        print_kv(d)
        print_table(d["instruments"], [("instrument", "Instrument"), ("realized_pnl", "Realized"),
                                       ("unrealized_pnl", "Unrealized"), ("fees", "Fees"), ("net_pnl", "Net")])

    emit(state, data, render)


# --------------------------------------------------------------------------- orders


@cli.group()
def orders() -> None:
    """Submit, cancel, inspect and watch orders."""


STATUS_CHOICES = enum_choices(orders_pb2.OrderStatus.DESCRIPTOR)


@orders.command("list")
@click.option("--open", "open_only", is_flag=True, help="Only non-terminal orders.")
@click.option("--status", "statuses", multiple=True, metavar="STATUS",
              help=f"Only these statuses (repeatable or comma list): {', '.join(STATUS_CHOICES)}.")
@click.option("--instrument", default="", help="Only this instrument (SYMBOL@VENUE).")
@click.option("--strategy", "strategy_id", default="", help="Only this strategy id.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=0),
              help="Maximum orders to show (0 = all).")
@pass_state
def orders_list(state: State, open_only: bool, statuses: tuple[str, ...], instrument: str, strategy_id: str,
                limit: int) -> None:
    """List orders, newest first (follows all pages up to --limit)."""
    status_values = []
    for name in _split_multi(statuses):
        try:
            status_values.append(enum_value(orders_pb2.OrderStatus.DESCRIPTOR, name, field="status"))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--status") from None
    page_size = min(limit, 500) if limit else 500
    items = state.client().iter_orders(page_size=page_size, limit=limit or None, statuses=status_values,
                                       instrument=instrument, strategy_id=strategy_id, open_only=open_only)
    data = {"orders": [to_dict(o) for o in items]}
    emit(state, data, lambda d: print_table(d["orders"], ORDER_COLUMNS))


@orders.command("submit")
@click.argument("instrument")
@click.argument("side", type=click.Choice(["buy", "sell"], case_sensitive=False))
@click.argument("qty", callback=_decimal_callback)
@click.option("--type", "order_type", type=click.Choice(["market", "limit"], case_sensitive=False), default=None,
              help="Order type [default: limit if --price is given, else market].")
@click.option("--price", callback=_decimal_callback, default=None, help="Limit price (quote per base).")
@click.option("--client-order-id", "--id", "client_order_id", default=None, help="Client order id (idempotency).")
@click.option("--strategy", "strategy_id", default=None, help="Owning strategy id (default: manual).")
@pass_state
def orders_submit(state: State, instrument: str, side: str, qty: str, order_type: str | None, price: str | None,
                  client_order_id: str | None, strategy_id: str | None) -> None:
    """Submit an order: INSTRUMENT (SYMBOL@VENUE) SIDE (buy|sell) QTY (base units).

    Example: lyractl orders submit ADA/BTC@paper buy 100 --type limit --price 0.0000301
    """
    order_type = (order_type or ("limit" if price is not None else "market")).lower()
    if order_type == "limit" and price is None:
        _fail_usage("--price is required for limit orders")
    if order_type == "market" and price is not None:
        _fail_usage("--price is not allowed for market orders")
    order = state.client().submit_order(instrument, side, qty, order_type=order_type, limit_price=price,
                                        client_order_id=client_order_id, strategy_id=strategy_id)
    emit(state, to_dict(order), print_kv)


@orders.command("cancel")
@click.argument("client_order_id")
@pass_state
def orders_cancel(state: State, client_order_id: str) -> None:
    """Request cancelation of an order by client order id."""
    emit(state, to_dict(state.client().cancel_order(client_order_id)), print_kv)


@orders.command("get")
@click.argument("client_order_id")
@pass_state
def orders_get(state: State, client_order_id: str) -> None:
    """Show one order by client order id."""
    emit(state, to_dict(state.client().get_order(client_order_id)), print_kv)


@orders.command("watch")
@click.option("--instrument", default="", help="Only this instrument.")
@click.option("--strategy", "strategy_id", default="", help="Only this strategy.")
@click.option("--order", "client_order_id", default="", help="Only this order.")
@click.option("--count", default=0, type=click.IntRange(min=0), help="Stop after N events (0 = until Ctrl-C).")
@pass_state
def orders_watch(state: State, instrument: str, strategy_id: str, client_order_id: str, count: int) -> None:
    """Stream order events as they happen (with --json: one JSON document per line)."""
    stream = state.client().stream_order_events(instrument=instrument, strategy_id=strategy_id,
                                                client_order_id=client_order_id)
    console = None if state.json else _console()
    seen = 0
    try:
        for event in stream:
            data = to_dict(event)
            if console is None:
                click.echo(json.dumps(data, separators=(",", ":")))
            else:
                o = data.get("order") or {}
                fill = data.get("fill") or {}
                extra = f" fill {fill.get('qty')} @ {fill.get('price')}" if fill else ""
                console.print(Text(
                    f"{data['seq']:>8} {data['type']:<10} {o.get('client_order_id', '')} {o.get('instrument', '')} "
                    f"{o.get('side', '')} {o.get('filled_qty', '')}/{o.get('qty', '')} {o.get('status', '')}"
                    f"{extra}"))
            seen += 1
            if count and seen >= count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()


@cli.command()
@click.option("--order", "client_order_id", default="", help="Only fills of this order.")
@click.option("--instrument", default="", help="Only this instrument.")
@pass_state
def fills(state: State, client_order_id: str, instrument: str) -> None:
    """List fills, newest first (all pages)."""
    items = state.client().iter_fills(page_size=500, client_order_id=client_order_id, instrument=instrument)
    data = {"fills": [to_dict(f) for f in items]}
    emit(state, data, lambda d: print_table(d["fills"], FILL_COLUMNS))


# --------------------------------------------------------------------------- strategies


@cli.group()
def strategy() -> None:
    """Strategy types and instances."""


@strategy.command("types")
@pass_state
def strategy_types(state: State) -> None:
    """Available strategy types and their parameters."""
    data = to_dict(state.client().list_strategy_types())

    def render(d: dict[str, Any]) -> None:
        rows = []
        for t in d["types"]:
            params = "; ".join(
                f"{p['name']} ({p['type']}{', default ' + p['default_value'] if p['default_value'] else ''})"
                for p in t["parameters"])
            rows.append({"name": t["name"], "description": t["description"], "parameters": params})
        print_table(rows, [("name", "Type"), ("description", "Description"), ("parameters", "Parameters")])

    emit(state, data, render)


@strategy.command("list")
@pass_state
def strategy_list(state: State) -> None:
    """List strategies."""
    data = {"strategies": [to_dict(s) for s in state.client().iter_strategies()]}
    emit(state, data, lambda d: print_table(d["strategies"], STRATEGY_COLUMNS))


@strategy.command("create")
@click.argument("strategy_type", metavar="TYPE")
@click.option("--instrument", "instruments", multiple=True, required=True,
              help="Instrument SYMBOL@VENUE (repeatable or comma list).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Parameter (repeatable).")
@click.option("--id", "strategy_id", default=None, help="Strategy id (default: server-generated).")
@pass_state
def strategy_create(state: State, strategy_type: str, instruments: tuple[str, ...], params: tuple[str, ...],
                    strategy_id: str | None) -> None:
    """Create a strategy of TYPE (it starts in status CREATED; see `strategy start`)."""
    inst = _split_multi(instruments)
    if not inst:
        raise click.BadParameter("at least one instrument is required", param_hint="--instrument")
    created = state.client().create_strategy(strategy_type, inst, _key_values(params, "--param"),
                                             strategy_id=strategy_id)
    emit(state, to_dict(created), print_kv)


@strategy.command("start")
@click.argument("strategy_id")
@pass_state
def strategy_start(state: State, strategy_id: str) -> None:
    """Start a strategy."""
    emit(state, to_dict(state.client().start_strategy(strategy_id)), print_kv)


@strategy.command("stop")
@click.argument("strategy_id")
@pass_state
def strategy_stop(state: State, strategy_id: str) -> None:
    """Stop a strategy."""
    emit(state, to_dict(state.client().stop_strategy(strategy_id)), print_kv)


@strategy.command("get")
@click.argument("strategy_id")
@pass_state
def strategy_get(state: State, strategy_id: str) -> None:
    """Show one strategy."""
    emit(state, to_dict(state.client().get_strategy(strategy_id)), print_kv)


# --------------------------------------------------------------------------- risk


@cli.group()
def risk() -> None:
    """Risk limits, trading state, kill switch and circuit breaker."""


@risk.command("limits")
@click.option("--set", "updates", multiple=True, metavar="KEY=VALUE",
              help=f"Change a limit (repeatable); keys: {', '.join(RISK_LIMIT_FIELDS)}.")
@pass_state
def risk_limits(state: State, updates: tuple[str, ...]) -> None:
    """Show risk limits, or change some with --set."""
    if updates:
        fields = _key_values(updates, "--set")
        for key, value in fields.items():
            if key not in RISK_LIMIT_FIELDS:
                raise click.BadParameter(f"unknown limit {key!r} (choose from {', '.join(RISK_LIMIT_FIELDS)})",
                                         param_hint="--set")
            if key == "max_open_orders":
                if not value.isdigit():
                    raise click.BadParameter(f"max_open_orders: not a non-negative integer: {value!r}",
                                             param_hint="--set")
            elif key != "currency":
                try:
                    to_decimal_str(value, field=key)
                except ValueError as exc:
                    raise click.BadParameter(str(exc), param_hint="--set") from None
        limits = state.client().update_risk_limits(**fields)
    else:
        limits = state.client().get_risk_limits()
    emit(state, to_dict(limits), print_kv)


@risk.command("status")
@pass_state
def risk_status(state: State) -> None:
    """Trading state, kill switch, circuit breaker and daily PnL."""
    emit(state, to_dict(state.client().get_risk_status()), print_kv)


@risk.command("kill-switch")
@click.argument("action", type=click.Choice(["engage", "release"], case_sensitive=False))
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@pass_state
def risk_kill_switch(state: State, action: str, reason: str) -> None:
    """Engage (halt trading, cancel open orders) or release the kill switch."""
    client = state.client()
    result = client.engage_kill_switch(reason) if action.lower() == "engage" else client.release_kill_switch(reason)
    emit(state, to_dict(result), print_kv)


@risk.command("reset-breaker")
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@pass_state
def risk_reset_breaker(state: State, reason: str) -> None:
    """Reset a tripped circuit breaker."""
    emit(state, to_dict(state.client().reset_circuit_breaker(reason)), print_kv)


# --------------------------------------------------------------------------- market data


@cli.command()
@click.option("--venue", default="", help="Only this venue.")
@pass_state
def instruments(state: State, venue: str) -> None:
    """Tradable instruments with precision, minimums and fees."""
    data = {"instruments": [to_dict(i) for i in state.client().iter_instruments(venue)]}
    emit(state, data, lambda d: print_table(d["instruments"], [
        ("instrument", "Instrument"), ("base", "Base"), ("quote", "Quote"), ("price_tick", "Tick"),
        ("qty_step", "Step"), ("min_qty", "Min qty"), ("min_notional", "Min notional"),
        ("maker_fee_bps", "Maker bps"), ("taker_fee_bps", "Taker bps")]))


@cli.command()
@click.argument("instrument")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=0),
              help="Most recent N candles in the range (0 = server default).")
@click.option("--interval", default="", help="Bar interval, e.g. 5m (default: native).")
@click.option("--start", callback=_iso_datetime, default=None, help="From this open time (ISO 8601, UTC).")
@click.option("--end", callback=_iso_datetime, default=None, help="Before this open time (ISO 8601, UTC).")
@pass_state
def candles(state: State, instrument: str, limit: int, interval: str, start: _dt.datetime | None,
            end: _dt.datetime | None) -> None:
    """Candles of INSTRUMENT (SYMBOL@VENUE), oldest first."""
    data = to_dict(state.client().get_candles(instrument, start_time=start, end_time=end, limit=limit,
                                              interval=interval))
    emit(state, data, lambda d: print_table(d["candles"], [
        ("open_time", "Open time"), ("open", "Open"), ("high", "High"), ("low", "Low"), ("close", "Close"),
        ("volume", "Volume")], title=f"{instrument} {d.get('interval') or ''}".strip()))


@cli.group()
def data() -> None:
    """Candle datasets on the appliance: download from an exchange, list the folder.

    \b
    Files live in the appliance's <data_dir>/datasets folder as
    {exchange}_{BASE-QUOTE}_{timeframe}.csv (the format the paper venue replays; point
    `[paper] dataset` at the folder). The appliance downloads them itself, with public
    exchange access only (no API keys).
    """


def _gaps_text(result: dict[str, Any]) -> str:
    count = int(result.get("gap_count") or 0)
    return f"{count} ({result.get('missing_bars')} bars)" if count else "0"


def _print_fetch_summary(final: dict[str, Any]) -> None:
    rows = []
    for r in final["results"]:
        f = r.get("file") or {}
        rows.append({"file": f.get("name"), "bars": f.get("bars"), "written": r.get("bars_written"),
                     "first": f.get("first_time"), "last": f.get("last_time"), "gaps": _gaps_text(r),
                     "note": r.get("error") or ("repaired a torn last line" if r.get("repaired") else "")})
    print_table(rows, [("file", "File"), ("bars", "Bars"), ("written", "New"), ("first", "First (UTC)"),
                       ("last", "Last (UTC)"), ("gaps", "Gaps"), ("note", "Note")],
                title=f"Candles in {final.get('dataset_dir')}")


@data.command("fetch")
@click.option("--exchange", required=True, help="ccxt exchange id, e.g. binance.")
@click.option("--symbols", "symbols", multiple=True, required=True, metavar="SYMBOLS",
              help="Spot symbols, comma list or repeatable: BTC/USDT,ETH/BTC.")
@click.option("--timeframe", required=True, help="Bar length the exchange offers, e.g. 1m, 5m, 1h.")
@click.option("--since", callback=_iso_datetime, required=True,
              help="Open time of the first bar: 2024-01-01 or an ISO 8601 time (UTC).")
@click.option("--until", callback=_iso_datetime, default=None,
              help="Stop before bars opening at this time (default: up to the last complete bar).")
@click.option("--dataset-dir", default="", help="Folder inside the appliance's dataset folder (default: it).")
@pass_state
def data_fetch(state: State, exchange: str, symbols: tuple[str, ...], timeframe: str, since: _dt.datetime,
               until: _dt.datetime | None, dataset_dir: str) -> None:
    """Download candles into the appliance's dataset folder.

    Resumable: an existing file is continued after its last bar (run the same command again
    after an interruption, or later to bring the files up to date). Only complete bars are
    written; bars the exchange lacks are left as gaps and reported. Shows a progress bar per
    symbol, then a summary (with --json: one JSON document per progress message, the last
    with "done": true). Exits 4 if any symbol stopped early.
    """
    symbol_list = _split_multi(symbols)
    if not symbol_list:
        raise click.BadParameter("at least one symbol is required", param_hint="--symbols")
    stream = state.client().fetch_candles(exchange, symbol_list, timeframe, since, until, dataset_dir=dataset_dir)
    final: dict[str, Any] | None = None
    progress = None
    tasks: dict[str, Any] = {}
    try:
        if not state.json:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

            progress = Progress(TextColumn("{task.description:<14}"), BarColumn(), TaskProgressColumn(),
                                TextColumn("{task.completed:>9,.0f} bars  {task.fields[last]}"),
                                console=_console(), transient=False)
            progress.start()
        for message in stream:
            data = to_dict(message)
            if state.json:
                click.echo(json.dumps(data, separators=(",", ":")))
            if message.done:
                final = data
                break
            if progress is not None:
                task = tasks.get(message.symbol)
                if task is None:
                    task = tasks[message.symbol] = progress.add_task(message.symbol, total=None, last="")
                progress.update(task, completed=message.bars_written,
                                total=max(message.expected_bars, message.bars_written) or None,
                                last=f"last {data['last_time']}" if data.get("last_time") else "")
        if progress is not None and final is not None:
            for result in final["results"]:
                task = tasks.get(result["symbol"])
                if task is not None:  # gaps make fewer bars than slots: the symbol is done
                    n = int(result["bars_written"])
                    progress.update(task, completed=n, total=n or 1)
    except KeyboardInterrupt:
        stream.close()
        if progress is not None:
            progress.stop()
        click.echo("interrupted: the bars written so far are kept; run the same command again to resume", err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    finally:
        if progress is not None:
            progress.stop()
    if final is None:
        raise LyraError(grpc.StatusCode.INTERNAL, "the download stream ended without its final message")
    if not state.json:
        _print_fetch_summary(final)
    failed = [r for r in final["results"] if r.get("error")]
    for r in failed:
        click.echo(f"error: {r['symbol']}: {_one_line(r['error'])} (run again to resume)", err=True)
    if failed:
        raise click.exceptions.Exit(EXIT_SERVER)


@data.command("list")
@click.option("--dataset-dir", default="", help="Folder inside the appliance's dataset folder (default: it).")
@pass_state
def data_list(state: State, dataset_dir: str) -> None:
    """List the candle files of the appliance's dataset folder (bars, first/last open time).

    Uses the FetchCandles RPC without symbols, which downloads nothing (so it needs the
    same permission as `data fetch`).
    """
    final = to_dict(state.client().list_candle_files(dataset_dir))
    data = {"dataset_dir": final["dataset_dir"], "files": final["files"]}
    emit(state, data, lambda d: print_table(d["files"], [
        ("name", "File"), ("exchange", "Exchange"), ("symbol", "Symbol"), ("timeframe", "TF"), ("bars", "Bars"),
        ("first_time", "First (UTC)"), ("last_time", "Last (UTC)"), ("size_bytes", "Bytes")],
        title=f"Candle files in {d['dataset_dir']}"))


# --------------------------------------------------------------------------- TOTP and password


class _TtyBuffer(io.StringIO):
    """A text buffer that renders like the terminal it will be printed on."""

    def isatty(self) -> bool:
        return True


def _qr_text(data: str) -> str:
    """The QR code of ``data`` as text for the terminal (ANSI block characters on a tty,
    Unicode half blocks otherwise)."""
    import qrcode

    qr = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(data)
    qr.make(fit=True)
    buf = _TtyBuffer() if sys.stdout.isatty() else io.StringIO()
    if sys.stdout.isatty():
        qr.print_ascii(out=buf, tty=True)
    else:
        qr.print_ascii(out=buf, invert=True)
    return buf.getvalue()


def _show_totp_secret(uri: str, secret: str) -> None:
    """The one-time display of a new TOTP secret: URI, QR code, and the secret itself."""
    click.echo("Scan this QR code with your authenticator app (shown once):")
    click.echo(_qr_text(uri), nl=False)
    click.echo(f"otpauth URI: {uri}")
    click.echo(f"Or enter this secret manually: {secret}")


def _show_recovery_codes(codes: Sequence[str]) -> None:
    """The one-time display of TOTP recovery codes."""
    click.echo("Recovery codes (each works once, instead of a TOTP code):")
    for code in codes:
        click.echo(f"  {code}")
    click.echo("warning: store these recovery codes somewhere safe now: they are shown only this once.", err=True)


def _enrollment_done(state: State) -> None:
    if not state._uses_service_token:
        state.store.update(state.profile, mfa_enrollment_required=None)


@cli.group()
def totp() -> None:
    """Two-factor authentication (TOTP, RFC 6238) for your own account."""


@totp.command("enroll", cls=NoArgvSecretsCommand)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_state
def totp_enroll(state: State, password_stdin: bool) -> None:
    """Enroll an authenticator app interactively.

    Asks your password (hidden prompt, --password-stdin or LYRA_PASSWORD), shows the otpauth
    URI, a QR code and the secret once, asks a code from the app to confirm, then prints
    the one-time recovery codes once. Scripts use `totp begin` and `totp confirm` with --json.
    """
    if state.json:
        _fail_usage("`totp enroll` is interactive; with --json use `totp begin` then `totp confirm CODE`")
    password = _read_password(password_stdin)
    client = state.client()
    begun = client.begin_totp_enrollment(password)
    _show_totp_secret(begun.otpauth_uri, begun.secret)
    attempts = 3
    while True:
        code = click.prompt("Code from the app", err=True).strip()
        try:
            confirmed = client.confirm_totp_enrollment(code)
            break
        except LyraError as err:
            attempts -= 1
            if err.code != grpc.StatusCode.INVALID_ARGUMENT or attempts <= 0:
                raise
            click.echo(f"error: {err.code.name}: {_one_line(err.message)} (try again)", err=True)
    _enrollment_done(state)
    click.echo("TOTP enrolled: future logins need a code from the app.")
    _show_recovery_codes(list(confirmed.recovery_codes))


@totp.command("begin", cls=NoArgvSecretsCommand)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@pass_state
def totp_begin(state: State, password_stdin: bool) -> None:
    """Start enrollment (non-interactive): print the otpauth URI and secret once
    (--json: {"otpauth_uri", "secret"}); finish with `totp confirm CODE`."""
    password = _read_password(password_stdin)
    begun = state.client().begin_totp_enrollment(password)
    if state.json:
        emit(state, {"otpauth_uri": begun.otpauth_uri, "secret": begun.secret}, lambda d: None)
        return
    _show_totp_secret(begun.otpauth_uri, begun.secret)
    click.echo("Then run: lyractl totp confirm CODE")


@totp.command("confirm")
@click.argument("code")
@pass_state
def totp_confirm(state: State, code: str) -> None:
    """Confirm enrollment with a CODE from the app; prints the recovery codes once
    (--json: {"recovery_codes": [...]})."""
    confirmed = state.client().confirm_totp_enrollment(code)
    _enrollment_done(state)
    codes = list(confirmed.recovery_codes)
    if state.json:
        emit(state, {"recovery_codes": codes}, lambda d: None)
        return
    click.echo("TOTP enrolled: future logins need a code from the app.")
    _show_recovery_codes(codes)


@cli.group()
def password() -> None:
    """Your own password."""


@password.command("change", cls=NoArgvSecretsCommand)
@click.option("--password-stdin", is_flag=True,
              help="Read the current password (line 1) and the new one (line 2) from stdin.")
@pass_state
def password_change(state: State, password_stdin: bool) -> None:
    """Change your password (hidden prompts; the new one is asked twice). The server revokes
    your other sessions; this one stays logged in."""
    if password_stdin:
        current = _stdin_line("current password", "--password-stdin")
        new = _stdin_line("new password", "--password-stdin")
    else:
        current = _read_secret("current password")
        new = _read_secret("new password", confirm=True)
    if current == new:
        _fail_usage("the new password must differ from the current one")
    state.client().change_password(current, new)
    emit(state, {"changed": True}, lambda d: _console().print(Text(
        "Password changed; your other sessions were revoked.")))


# --------------------------------------------------------------------------- vault


VAULT_STATUS_COLUMNS = [
    ("credential_id", "ID"), ("venue", "Venue"), ("label", "Label"), ("fingerprint", "Fingerprint"),
    ("version", "Ver"), ("fields", "Fields"), ("age_days", "Age (d)"), ("stale", "Stale"),
    ("rotation_pending", "Rotation pending"), ("rotate_time", "Rotated"),
]


def _passphrase(what: str, passphrase_stdin: bool, env: str, *, confirm: bool = False) -> str:
    return _read_secret(what, from_stdin=passphrase_stdin, option="--passphrase-stdin", env=env, confirm=confirm)


_passphrase_stdin_option = click.option(
    "--passphrase-stdin", is_flag=True, help="Read the passphrase from the first line of stdin.")


@cli.group()
def vault() -> None:
    """The encrypted vault of exchange credentials.

    Passphrases come from a hidden prompt, --passphrase-stdin or LYRA_VAULT_PASSPHRASE,
    never from the command line.
    """


@vault.command("status")
@pass_state
def vault_status(state: State) -> None:
    """State (UNINITIALIZED, SEALED, UNSEALED), data key version, KDF and credential counts."""
    emit(state, to_dict(state.client().get_vault_status()), print_kv)


@vault.command("init", cls=NoArgvSecretsCommand)
@_passphrase_stdin_option
@pass_state
def vault_init(state: State, passphrase_stdin: bool) -> None:
    """Initialize the vault with a new passphrase (asked twice); it is left unsealed."""
    passphrase = _passphrase("vault passphrase", passphrase_stdin, "LYRA_VAULT_PASSPHRASE", confirm=True)
    emit(state, to_dict(state.client().initialize_vault(passphrase)), print_kv)
    click.echo("warning: keep the passphrase safe: without it (or the key file) the vault cannot be unsealed.",
               err=True)


@vault.command("unseal", cls=NoArgvSecretsCommand)
@_passphrase_stdin_option
@pass_state
def vault_unseal(state: State, passphrase_stdin: bool) -> None:
    """Unseal the vault with its passphrase."""
    passphrase = _passphrase("vault passphrase", passphrase_stdin, "LYRA_VAULT_PASSPHRASE")
    emit(state, to_dict(state.client().unseal_vault(passphrase)), print_kv)


@vault.command("seal")
@pass_state
def vault_seal(state: State) -> None:
    """Seal the vault (the data key is wiped from the appliance's memory)."""
    emit(state, to_dict(state.client().seal_vault()), print_kv)


@vault.command("passphrase", cls=NoArgvSecretsCommand)
@click.option("--passphrase-stdin", is_flag=True,
              help="Read the current passphrase (line 1) and the new one (line 2) from stdin.")
@pass_state
def vault_passphrase(state: State, passphrase_stdin: bool) -> None:
    """Change the vault passphrase (current from the prompt or LYRA_VAULT_PASSPHRASE, new from
    the prompt, asked twice, or LYRA_VAULT_NEW_PASSPHRASE). Secrets are not re-encrypted."""
    if passphrase_stdin:
        current = _stdin_line("current passphrase", "--passphrase-stdin")
        new = _stdin_line("new passphrase", "--passphrase-stdin")
    else:
        current = _passphrase("current vault passphrase", False, "LYRA_VAULT_PASSPHRASE")
        new = _passphrase("new vault passphrase", False, "LYRA_VAULT_NEW_PASSPHRASE", confirm=True)
    if current == new:
        _fail_usage("the new passphrase must differ from the current one")
    emit(state, to_dict(state.client().change_vault_passphrase(current, new)), print_kv)


@vault.command("rotate-key")
@pass_state
def vault_rotate_key(state: State) -> None:
    """Generate a new data key and re-encrypt every credential with it."""
    emit(state, to_dict(state.client().rotate_data_key()), print_kv)


@vault.group("credentials")
def vault_credentials() -> None:
    """Exchange API credentials in the vault (metadata only is ever shown).

    Secrets come from hidden prompts or, with --from-stdin, a JSON document on stdin:
    {"api_key": "...", "secret": "...", "passphrase": "...", "uid": "..."} (passphrase and
    uid only for exchanges that need them; ccxt's apiKey/password names are accepted too).
    """


_SECRET_KEYS = {"api_key": "api_key", "apiKey": "api_key", "secret": "secret", "passphrase": "passphrase",
                "password": "passphrase", "uid": "uid"}


def _credential_secrets(from_stdin: bool) -> dict[str, str]:
    """api_key/secret/passphrase/uid from stdin JSON or hidden prompts (never echoed)."""
    if from_stdin:
        raw = sys.stdin.read()
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:
            _fail_usage(f"--from-stdin: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
        if not isinstance(doc, dict):
            _fail_usage("--from-stdin: expected a JSON object")
        unknown = sorted(str(k) for k in doc if k not in _SECRET_KEYS)
        if unknown:
            _fail_usage(f"--from-stdin: unknown key(s) {', '.join(unknown)} "
                        "(expected api_key, secret, passphrase, uid)")
        out = {"api_key": "", "secret": "", "passphrase": "", "uid": ""}
        for key, value in doc.items():
            if value is None:
                continue
            if not isinstance(value, str):
                _fail_usage(f"--from-stdin: {key} must be a string")
            out[_SECRET_KEYS[key]] = value.strip()
    else:
        out = {
            "api_key": click.prompt("API key", hide_input=True, err=True).strip(),
            "secret": click.prompt("API secret", hide_input=True, err=True).strip(),
            "passphrase": click.prompt("API passphrase (empty if the exchange has none)", hide_input=True,
                                       default="", show_default=False, err=True),
            "uid": click.prompt("UID (empty if the exchange has none)", hide_input=True, default="",
                                show_default=False, err=True).strip(),
        }
    for key in ("api_key", "secret"):
        if not out[key]:
            _fail_usage(f"{key}: required")
    return out


@vault_credentials.command("list")
@click.option("--venue", default="", help="Only this venue (ccxt exchange id).")
@pass_state
def credentials_list(state: State, venue: str) -> None:
    """List credentials: venue, label, API key fingerprint, version, age, rotation state."""
    data = to_dict(state.client().list_credentials(venue))
    emit(state, data, lambda d: print_table(d["credentials"], VAULT_STATUS_COLUMNS))


@vault_credentials.command("get")
@click.argument("credential_id")
@pass_state
def credentials_get(state: State, credential_id: str) -> None:
    """Show one credential's metadata."""
    emit(state, to_dict(state.client().get_credential(credential_id)), print_kv)


@vault_credentials.command("add", cls=NoArgvSecretsCommand)
@click.option("--venue", required=True, help="ccxt exchange id, e.g. binance.")
@click.option("--label", required=True, help="Your name for this credential, e.g. main.")
@click.option("--from-stdin", is_flag=True, help="Read the secrets as a JSON object from stdin.")
@pass_state
def credentials_add(state: State, venue: str, label: str, from_stdin: bool) -> None:
    """Store a new exchange credential. Compare the printed fingerprint with
    `printf %s KEY | sha256sum` (first 12 hex digits)."""
    secrets_ = _credential_secrets(from_stdin)
    created = state.client().create_credential(venue, label, **secrets_)
    emit(state, to_dict(created), print_kv)


@vault_credentials.command("rotate", cls=NoArgvSecretsCommand)
@click.argument("credential_id")
@click.option("--from-stdin", is_flag=True, help="Read the new secrets as a JSON object from stdin.")
@pass_state
def credentials_rotate(state: State, credential_id: str, from_stdin: bool) -> None:
    """Store a new version of CREDENTIAL_ID beside the current one; then `confirm` it once
    the new key works (or `abort`)."""
    secrets_ = _credential_secrets(from_stdin)
    rotated = state.client().rotate_credential(credential_id, **secrets_)
    emit(state, to_dict(rotated), print_kv)
    if not state.json:
        click.echo(f"Rotation pending: once the new key works run `lyractl vault credentials confirm "
                   f"{credential_id}` (or `abort`).", err=True)


@vault_credentials.command("confirm")
@click.argument("credential_id")
@pass_state
def credentials_confirm(state: State, credential_id: str) -> None:
    """Make the pending version current and drop the previous one."""
    emit(state, to_dict(state.client().confirm_credential_rotation(credential_id)), print_kv)


@vault_credentials.command("abort")
@click.argument("credential_id")
@pass_state
def credentials_abort(state: State, credential_id: str) -> None:
    """Drop the pending version and keep the current one."""
    emit(state, to_dict(state.client().abort_credential_rotation(credential_id)), print_kv)


@vault_credentials.command("delete")
@click.argument("credential_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def credentials_delete(state: State, credential_id: str, yes: bool) -> None:
    """Delete a credential and all its versions."""
    if not yes and not click.confirm(f"Delete credential {credential_id}?", err=True):
        _fail_usage("not confirmed (use --yes)")
    state.client().delete_credential(credential_id)
    emit(state, {"deleted": credential_id}, lambda d: _console().print(Text(f"Deleted credential {credential_id}")))


# --------------------------------------------------------------------------- users, sessions, tokens


USER_COLUMNS = [("username", "User"), ("role", "Role"), ("disabled", "Disabled"), ("totp_enrolled", "TOTP"),
                ("locked_until", "Locked until"), ("create_time", "Created"), ("user_id", "ID")]
SESSION_COLUMNS = [("session_id", "Session"), ("username", "User"), ("create_time", "Created"),
                   ("last_used_time", "Last used"), ("expire_time", "Expires"), ("revoked", "Revoked"),
                   ("peer", "Peer")]
SERVICE_TOKEN_COLUMNS = [("token_id", "ID"), ("name", "Name"), ("role", "Role"), ("create_time", "Created"),
                         ("expire_time", "Expires"), ("last_used_time", "Last used"), ("revoked", "Revoked"),
                         ("created_by", "Created by")]
_role_choice = click.Choice(ROLES, case_sensitive=False)


@cli.group()
def users() -> None:
    """User accounts (admin)."""


@users.command("list")
@pass_state
def users_list(state: State) -> None:
    """List users with role, disabled flag and TOTP enrollment."""
    emit(state, to_dict(state.client().list_users()), lambda d: print_table(d["users"], USER_COLUMNS))


@users.command("add", cls=NoArgvSecretsCommand)
@click.argument("username")
@click.option("--role", required=True, type=_role_choice, help="Role of the new user.")
@click.option("--password-stdin", is_flag=True, help="Read the initial password from the first line of stdin.")
@pass_state
def users_add(state: State, username: str, role: str, password_stdin: bool) -> None:
    """Create USERNAME with a role; the initial password is asked twice (hidden)."""
    if password_stdin:
        initial = _stdin_line("password", "--password-stdin")
    else:
        initial = _read_secret(f"password for {username}", confirm=True)
    emit(state, to_dict(state.client().create_user(username, initial, role.lower())), print_kv)


@users.command("get")
@click.argument("username")
@pass_state
def users_get(state: State, username: str) -> None:
    """Show one user."""
    emit(state, to_dict(state.client().get_user(username)), print_kv)


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=_role_choice)
@pass_state
def users_set_role(state: State, username: str, role: str) -> None:
    """Change USERNAME's role (revokes the user's sessions)."""
    emit(state, to_dict(state.client().update_user(username, role=role.lower())), print_kv)


@users.command("disable")
@click.argument("username")
@pass_state
def users_disable(state: State, username: str) -> None:
    """Disable USERNAME (revokes the user's sessions)."""
    emit(state, to_dict(state.client().update_user(username, disabled=True)), print_kv)


@users.command("enable")
@click.argument("username")
@pass_state
def users_enable(state: State, username: str) -> None:
    """Enable USERNAME again."""
    emit(state, to_dict(state.client().update_user(username, disabled=False)), print_kv)


@users.command("reset-password", cls=NoArgvSecretsCommand)
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new password from the first line of stdin.")
@pass_state
def users_reset_password(state: State, username: str, password_stdin: bool) -> None:
    """Set a new password for USERNAME (asked twice, hidden); revokes the user's sessions."""
    if password_stdin:
        new = _stdin_line("new password", "--password-stdin")
    else:
        new = _read_secret(f"new password for {username}", confirm=True)
    emit(state, to_dict(state.client().reset_password(username, new)), print_kv)


@users.command("reset-totp")
@click.argument("username")
@pass_state
def users_reset_totp(state: State, username: str) -> None:
    """Remove USERNAME's TOTP enrollment (the user enrolls again at the next login)."""
    emit(state, to_dict(state.client().reset_totp(username)), print_kv)


@cli.group()
def sessions() -> None:
    """Login sessions (admin)."""


@sessions.command("list")
@click.option("--user", "username", default="", help="Only this user's sessions.")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked sessions.")
@pass_state
def sessions_list(state: State, username: str, include_revoked: bool) -> None:
    """List sessions (live ones unless --all)."""
    data = to_dict(state.client().list_sessions(username, include_revoked=include_revoked))
    emit(state, data, lambda d: print_table(d["sessions"], SESSION_COLUMNS))


@sessions.command("revoke")
@click.argument("session_id")
@pass_state
def sessions_revoke(state: State, session_id: str) -> None:
    """Revoke a session at once."""
    emit(state, to_dict(state.client().revoke_session(session_id)), print_kv)


_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def _ttl_callback(ctx: click.Context, param: click.Parameter, value: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([smhdwy]?)\s*", value.lower())
    if not match or int(match.group(1)) <= 0:
        raise click.BadParameter(f"expected a positive duration like 3600s, 12h, 30d, 1y, got {value!r}")
    return int(match.group(1)) * _TTL_UNITS[match.group(2)]


@cli.group("tokens")
def tokens_group() -> None:
    """Service-account API tokens for automation (admin). Use one with LYRA_TOKEN or
    --token-file."""


@tokens_group.command("create")
@click.option("--name", required=True, help="What the token is for, e.g. grafana.")
@click.option("--role", required=True, type=_role_choice, help="Role the token acts with.")
@click.option("--ttl", required=True, callback=_ttl_callback, metavar="DURATION",
              help="Lifetime: 3600s, 12h, 30d, 1y ... (the server accepts 1 hour to 1 year).")
@pass_state
def tokens_create(state: State, name: str, role: str, ttl: int) -> None:
    """Create a service token; the token itself is printed this once."""
    created = state.client().create_service_token(name, role.lower(), ttl)
    data = {"token": created.token, "service_token": to_dict(created.service_token)}

    def render(d: dict[str, Any]) -> None:
        print_kv(d["service_token"])
        click.echo(f"Token: {d['token']}")

    emit(state, data, render)
    click.echo("warning: store the token now (e.g. in a 0600 file for --token-file): it is shown only this once.",
               err=True)


@tokens_group.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@pass_state
def tokens_list(state: State, include_revoked: bool) -> None:
    """List service tokens (metadata only)."""
    data = to_dict(state.client().list_service_tokens(include_revoked=include_revoked))
    emit(state, data, lambda d: print_table(d["service_tokens"], SERVICE_TOKEN_COLUMNS))


@tokens_group.command("revoke")
@click.argument("token_id")
@pass_state
def tokens_revoke(state: State, token_id: str) -> None:
    """Revoke a service token at once."""
    emit(state, to_dict(state.client().revoke_service_token(token_id)), print_kv)


# --------------------------------------------------------------------------- audit


AUDIT_COLUMNS = [("seq", "Seq"), ("time", "Time"), ("username", "User"), ("role", "Role"), ("method", "Method"),
                 ("code", "Result"), ("peer", "Peer")]


@cli.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
@pass_state
def audit_verify(state: State) -> None:
    """Recompute the hash chain on the appliance: exit 0 if intact, 4 naming the first
    broken record if not."""
    data = to_dict(state.client().verify_audit_chain())
    ctx = click.get_current_context()
    if state.json:
        emit(state, data, lambda d: None)
    elif data["ok"]:
        _console().print(Text(f"Audit chain intact: {data['records_checked']} records checked."))
    if not data["ok"]:
        click.echo(f"error: audit chain broken at record seq {data['first_broken_seq']}: "
                   f"{_one_line(data['reason']) or 'hash mismatch'} ({data['records_checked']} records checked)",
                   err=True)
        ctx.exit(EXIT_SERVER)


@audit.command("list")
@click.option("--failures", is_flag=True, help="Only denied or failed calls.")
@click.option("--user", "username", default="", help="Only this user's calls.")
@click.option("--method", default="", help="Only this gRPC method, e.g. /lyra.v1.OrderService/SubmitOrder.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=0),
              help="Maximum records to show (0 = all).")
@pass_state
def audit_list(state: State, failures: bool, username: str, method: str, limit: int) -> None:
    """List audit records, newest first."""
    page_size = min(limit, 500) if limit else 500
    items = state.client().iter_audit_records(page_size=page_size, limit=limit or None, username=username,
                                              method=method, failures_only=failures)
    data = {"records": [to_dict(r) for r in items]}
    emit(state, data, lambda d: print_table(d["records"], AUDIT_COLUMNS))


def _private_temp(directory: str, name: str) -> tuple[int, str]:
    """A new file (mode 0600 whatever the umask) next to ``name`` in ``directory``."""
    import secrets as _secrets

    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{_secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            continue
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        return fd, tmp
    raise click.UsageError(f"cannot create a temporary file in {directory}")


@audit.command("export")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, writable=True),
              help="File to write (JSON lines, oldest first; created with mode 0600).")
@click.option("--after-seq", default=0, type=click.IntRange(min=0), help="Only records after this seq.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@pass_state
def audit_export(state: State, out_path: str, after_seq: int, force: bool) -> None:
    """Export every audit record, oldest first, as JSON lines to FILE (mode 0600). The file
    appears only once the export is complete. Also checks that each record links to the
    previous one (prev_hash) and exits 4 if not."""
    if os.path.lexists(out_path) and not force:
        _fail_usage(f"--out {out_path}: exists (use --force to replace it)")
    directory = os.path.dirname(os.path.abspath(out_path))
    stream = state.client().export_audit_records(after_seq=after_seq)
    count, first_seq, last_seq = 0, None, None
    broken: str | None = None
    prev: dict[str, Any] | None = None
    fd, tmp = _private_temp(directory, os.path.basename(out_path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for record in stream:
                data = to_dict(record)
                if prev is not None and broken is None:
                    if data["seq"] <= prev["seq"]:
                        broken = f"record seq {data['seq']} follows seq {prev['seq']} (not oldest first)"
                    elif data["prev_hash"] and prev["hash"] and data["prev_hash"] != prev["hash"]:
                        broken = f"record seq {data['seq']}: prev_hash does not match the hash of seq {prev['seq']}"
                fh.write(json.dumps(data, separators=(",", ":")) + "\n")
                count += 1
                first_seq = data["seq"] if first_seq is None else first_seq
                last_seq = data["seq"]
                prev = data
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, out_path)
        else:
            try:
                os.link(tmp, out_path)  # atomic, never replaces a file created meanwhile
            except FileExistsError:
                _fail_usage(f"--out {out_path}: exists (use --force to replace it)")
            except OSError:
                os.replace(tmp, out_path)  # filesystem without hard links
            else:
                os.unlink(tmp)
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    result = {"out": out_path, "records": count, "first_seq": first_seq, "last_seq": last_seq,
              "chain_linked": broken is None}
    emit(state, result, lambda d: _console().print(Text(
        f"Exported {d['records']} audit records"
        + (f" (seq {d['first_seq']}..{d['last_seq']})" if d["records"] else "")
        + f" to {d['out']} (mode 0600)")))
    if broken:
        click.echo(f"error: audit export is not a continuous chain: {broken}", err=True)
        click.get_current_context().exit(EXIT_SERVER)


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``lyractl``)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="lyractl")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
