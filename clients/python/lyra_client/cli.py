"""lyractl: command-line control of a Lyra appliance (click + rich).

Every command talks to the appliance's gRPC API through :class:`lyra_client.LyraClient`.
Human-readable tables by default; ``--json`` prints one JSON document on stdout (``orders
watch`` prints one JSON document per line), with decimals kept as strings, enums as short
names (``"OPEN"``) and times as RFC 3339 UTC strings.

Errors are one line on stderr (``error: PERMISSION_DENIED: ...``) and the exit code tells the
class of failure (see :data:`EXIT_CODES_HELP`). Tokens and passwords are never printed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
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

from .client import DEFAULT_TARGET, RISK_LIMIT_FIELDS, LyraClient, _client_version
from .config import TokenStore
from .convert import enum_choices, enum_value, to_decimal_str, to_dict
from .errors import LyraError

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
  4  other server error (invalid argument, rejected by risk, not found, ...)
  5  server unavailable or not answering in time

\b
Environment:
  LYRA_TARGET      host:port of the appliance (default 127.0.0.1:7443)
  LYRA_PASSWORD    password for `lyractl login` (scripts)
  LYRA_CONFIG_DIR  directory of tokens.json (default: the user config dir)
  LYRA_CA_CERT     CA certificate (PEM) to connect with TLS
"""


def _exit_code_for(err: LyraError) -> int:
    if err.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return EXIT_AUTH
    if err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return EXIT_UNAVAILABLE
    return EXIT_SERVER


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error_line(err: LyraError, target: str | None) -> str:
    line = f"error: {err.code.name}: {_one_line(err.message)}"
    if err.reject_rule:
        line += f" (reject rule: {_one_line(err.reject_rule)})"
    if err.code == grpc.StatusCode.UNAUTHENTICATED:
        line += " (run `lyractl login`)"
    elif err.code == grpc.StatusCode.UNAVAILABLE and target:
        line += f" (target {target})"
    return line


# --------------------------------------------------------------------------- state


@dataclass
class State:
    """Options shared by all commands, and the lazily created client."""

    target_option: str | None
    json: bool
    profile: str
    ca_cert: str | None
    timeout: float
    _client: LyraClient | None = field(default=None, repr=False)
    _store: TokenStore | None = field(default=None, repr=False)

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

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.ca_cert:
            return None
        try:
            with open(self.ca_cert, "rb") as fh:
                root = fh.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {self.ca_cert}: {exc.strerror}", param_hint="--ca-cert") from None
        return grpc.ssl_channel_credentials(root_certificates=root)

    def client(self, *, with_tokens: bool = True) -> LyraClient:
        """A client for the effective target. Stored tokens are used only when they were
        issued by that same target (never sent to another server); rotated tokens are
        written back to the profile."""
        if self._client is not None:
            return self._client
        target = self.target
        access = refresh = None
        if with_tokens:
            entry = self.entry()
            if entry.get("target") == target:
                access, refresh = entry.get("access_token"), entry.get("refresh_token")

        def persist(access_token: str, refresh_token: str) -> None:
            self.store.update_tokens(self.profile, access_token, refresh_token)

        self._client = LyraClient(
            target,
            access_token=access,
            refresh_token=refresh,
            on_tokens=persist if with_tokens else None,
            timeout=self.timeout,
            credentials=self.credentials(),
        )
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
            if state is not None:
                try:
                    target = state.target
                except Exception:
                    target = state.target_option
            click.echo(_error_line(err, target), err=True)
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
              help="CA certificate (PEM): connect with TLS [env LYRA_CA_CERT].")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Per-call deadline in seconds.")
@click.version_option(_client_version(), "--version", prog_name="lyractl", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, target: str | None, json_output: bool, profile: str, ca_cert: str | None,
        timeout: float) -> None:
    """Control a Lyra trading appliance over its authenticated gRPC API."""
    ctx.obj = State(target_option=target or None, json=json_output, profile=profile, ca_cert=ca_cert,
                    timeout=timeout)


# --------------------------------------------------------------------------- auth


@cli.command()
@click.option("--username", "-u", envvar="LYRA_USERNAME", default=None, help="User name (prompted if omitted).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--totp", "totp_code", default="", metavar="CODE", help="TOTP code, if the user has one enrolled.")
@pass_state
def login(state: State, username: str | None, password_stdin: bool, totp_code: str) -> None:
    """Log in and store the tokens for the profile (file mode 0600).

    The password is read from stdin (--password-stdin), else from LYRA_PASSWORD, else
    prompted without echo. It is never stored.
    """
    if not username:
        username = click.prompt("Username", err=True)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            _fail_usage("--password-stdin: no password on stdin")
    elif os.environ.get("LYRA_PASSWORD"):
        password = os.environ["LYRA_PASSWORD"]
    else:
        password = click.prompt("Password", hide_input=True, err=True)
    target = state.target
    client = state.client(with_tokens=False)
    resp = client.login(username, password, totp_code)
    expires = to_dict(resp)["access_expires_at"]
    state.store.save(state.profile, {
        "target": target,
        "username": resp.username or username,
        "role": resp.role,
        "access_token": resp.access_token,
        "refresh_token": resp.refresh_token,
        "access_expires_at": expires,
    })
    result = {"username": resp.username or username, "role": resp.role, "target": target,
              "profile": state.profile, "access_expires_at": expires}
    emit(state, result, lambda d: _console().print(Text(
        f"Logged in to {d['target']} as {d['username']} ({d['role']}); profile {d['profile']!r} saved in "
        f"{state.store.path}")))


@cli.command()
@pass_state
def logout(state: State) -> None:
    """Revoke the session on the server and forget the profile's tokens."""
    entry = state.entry()
    warning = None
    if entry.get("refresh_token") and entry.get("target") == state.target:
        try:
            state.client().logout()
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


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``lyractl``)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="lyractl")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
