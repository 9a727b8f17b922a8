"""Configuration: loads the firmware-config TOML and validates it.

Errors name the key and the file (``ConfigError: lyra.toml: risk.max_open_orders: ...``).
Relative paths in the file are resolved against the file's own folder. A few environment
variables override the file (documented in firmware-config/lyra.toml):

* ``LYRA_CONFIG``  - the config file (default: firmware-config/lyra.toml of the source tree)
* ``LYRA_HOME``    - ``storage.data_dir``
* ``LYRA_DATASET`` - ``paper.dataset``
"""

from __future__ import annotations

import os
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "firmware-config" / "lyra.toml"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _decimal_field(value: object) -> Decimal:
    if isinstance(value, float):
        raise ValueError("write decimals as strings (e.g. \"0.1\"), floats lose precision")
    return Decimal(str(value))


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


class TlsConfig(_Section):
    enabled: bool = Field(False, description="serve gRPC over TLS (required to listen beyond loopback)")
    cert: Path = Field(Path("tls/server.crt"), description="server certificate (PEM), relative to data_dir")
    key: Path = Field(Path("tls/server.key"), description="server private key (PEM), relative to data_dir")
    client_ca: Path = Field(Path("tls/ca.crt"), description="CA that signs client certificates (mTLS)")
    require_client_cert: bool = Field(False, description="mutual TLS: refuse clients without a certificate from client_ca")
    san: list[str] = Field(default_factory=list, description="extra DNS names / IPs for the server certificate")


class ServerConfig(_Section):
    listen: str = Field("127.0.0.1:7443", description="gRPC address; beyond loopback only with TLS")
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    tls: TlsConfig = TlsConfig()

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("must be HOST:PORT")
        return value

    @pydantic.model_validator(mode="after")
    def _tls_beyond_loopback(self) -> "ServerConfig":
        host = self.listen.rpartition(":")[0]
        if host not in LOOPBACK_HOSTS and not self.tls.enabled:
            raise ValueError(f"listen {self.listen}: binding beyond loopback requires [server.tls] enabled = true "
                             "(or reach the box through an SSH tunnel)")
        return self

    @property
    def is_loopback(self) -> bool:
        return self.listen.rpartition(":")[0] in LOOPBACK_HOSTS


class MetricsConfig(_Section):
    enabled: bool = True
    listen: str = Field("127.0.0.1:9464", description="Prometheus /metrics address (loopback)")


class StorageConfig(_Section):
    data_dir: Path = Field(Path("~/.local/share/lyra"), description="database, keys, run files")
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"


class PaperConfig(_Section):
    venue: str = Field("paper", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    market_data: Literal["replay", "live"] = Field(
        "replay", description="replay: the candle dataset on simulated time; live: closed bars polled from "
        "live_exchange on the wall clock (a dry run: orders never leave the appliance)")
    live_exchange: str = Field("binance", pattern=r"^[a-z0-9_]{2,32}$",
                               description="ccxt exchange id the live bars (and instruments) come from; public data only")
    live_history_bars: int = Field(1000, ge=1, le=100_000, description="closed bars fetched at start and kept per instrument")
    live_poll_s: float = Field(0.0, ge=0, description="shortest time between two polls of live bars; "
                               "0 = timeframe/10 within [2, 60] s")
    dataset: Path = Field(Path("../../shared/data/candles"), description="folder of candle CSVs")
    timeframe: str = Field("5m", pattern=r"^[1-9][0-9]*[smhdw]$", description="bar length, e.g. 1m, 5m, 1h, 1d")
    exchanges: list[str] = Field(default_factory=lambda: ["bittrex"])
    symbols: list[str] = Field(default_factory=list)
    speed: float = Field(0.0, ge=0, description="0 = as fast as possible, N = N times real time")
    start: Literal["first_strategy", "immediately", "manual"] = "first_strategy"
    slippage_bps: Decimal = Decimal("5")
    max_participation: Decimal = Decimal("0.1")
    maker_fee_bps: Decimal = Decimal("25")
    taker_fee_bps: Decimal = Decimal("25")
    qty_step: Decimal = Decimal("0.00000001")
    min_notional: dict[str, Decimal] = Field(default_factory=lambda: {"BTC": Decimal("0.0005")})
    starting_balances: dict[str, Decimal] = Field(default_factory=lambda: {"BTC": Decimal("1")})

    _dec = field_validator("slippage_bps", "max_participation", "maker_fee_bps", "taker_fee_bps", "qty_step", mode="before")(
        classmethod(lambda cls, v: _decimal_field(v))
    )

    @field_validator("min_notional", "starting_balances", mode="before")
    @classmethod
    def _dec_map(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: _decimal_field(v) for k, v in value.items()}
        return value

    @field_validator("max_participation")
    @classmethod
    def _participation(cls, value: Decimal) -> Decimal:
        if not 0 < value <= 1:
            raise ValueError("must be in (0, 1]")
        return value

    @pydantic.model_validator(mode="after")
    def _live_needs_symbols(self) -> "PaperConfig":
        if self.market_data == "live":
            if not self.symbols:
                raise ValueError('symbols: market_data = "live" needs the symbols to trade (ccxt symbols, e.g. '
                                 '["BTC/USDT"])')
            bad = [s for s in self.symbols if "/" not in s]
            if bad:
                raise ValueError(f"symbols: {bad} are not ccxt symbols like BTC/USDT")
        return self


class VenueConfig(_Section):
    """A live exchange account reached through CCXT."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="venue name in instrument ids, e.g. binance-main")
    exchange: str = Field(pattern=r"^[a-z0-9_]{2,32}$", description="ccxt exchange id, e.g. binance")
    credential: str = Field("", description="vault credential: its id, or EXCHANGE/LABEL as stored with "
                            "`lyractl vault credentials add --venue EXCHANGE --label LABEL`; empty = public data only")
    sandbox: bool = Field(False, description="use the exchange's testnet (ccxt set_sandbox_mode)")
    poll_interval_s: float = Field(2.0, gt=0, description="order/trade polling when no websocket stream is available")
    reconcile_interval_s: float = Field(300.0, gt=0, description="periodic reconciliation of open orders and balances")
    ccxt_options: dict[str, object] = Field(default_factory=dict, description="merged into the ccxt exchange's options")
    balance_drift_tolerance: Decimal = Field(Decimal("0.001"), description="accepted |venue - Lyra| per asset, fraction")
    kill_switch_on_drift: bool = Field(False, description="engage the kill switch when balances drift")
    symbols: list[str] = Field(default_factory=list, description="instruments to trade (ccxt symbols); empty = all spot markets")
    urls: dict[str, str] = Field(default_factory=dict, description="override ccxt API urls (tests: the exchange emulator)")

    _dec = field_validator("balance_drift_tolerance", mode="before")(classmethod(lambda cls, v: _decimal_field(v)))


class PortfolioConfig(_Section):
    nav_currency: str = "BTC"


class RiskConfig(_Section):
    max_order_notional: Decimal = Decimal("0")
    max_position_notional: Decimal = Decimal("0")
    max_open_orders: int = Field(0, ge=0)
    daily_loss_limit: Decimal = Decimal("0")

    _dec = field_validator("max_order_notional", "max_position_notional", "daily_loss_limit", mode="before")(
        classmethod(lambda cls, v: _decimal_field(v))
    )


class AuthConfig(_Section):
    access_token_ttl_s: int = Field(900, ge=30, le=86_400, description="access JWT lifetime")
    refresh_token_ttl_s: int = Field(7 * 86_400, ge=300, description="refresh token lifetime (sliding)")
    idle_timeout_s: int = Field(3600, ge=60, description="a session unused this long is ended")
    absolute_lifetime_s: int = Field(30 * 86_400, ge=300, description="a session ends this long after login, used or not")
    totp_required_roles: list[str] = Field(default_factory=lambda: ["admin", "trader"],
                                           description="roles that must enroll TOTP before doing anything else")
    lockout_threshold: int = Field(5, ge=1, description="failed logins (per user, per peer) before backoff starts")
    lockout_max: int = Field(10, ge=2, description="failed logins after which the user/peer is locked out")
    lockout_s: int = Field(900, ge=10, description="how long a lockout lasts")
    rate_limit_rps: float = Field(50.0, gt=0, description="API calls per second per token (sustained)")
    rate_limit_burst: int = Field(200, ge=1, description="API calls per token allowed in a burst")


class VaultConfig(_Section):
    key_file: Path | None = Field(None, description="unseal at boot from this key file (unattended boot)")
    credential_max_age_days: int = Field(90, ge=1, description="credentials older than this are flagged stale")
    unseal_max_failures: int = Field(5, ge=1, description="wrong passphrases before unsealing is refused for a while")


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class LyraConfig(_Section):
    server: ServerConfig = ServerConfig()
    metrics: MetricsConfig = MetricsConfig()
    storage: StorageConfig = StorageConfig()
    paper: PaperConfig = PaperConfig()
    portfolio: PortfolioConfig = PortfolioConfig()
    risk: RiskConfig = RiskConfig()
    auth: AuthConfig = AuthConfig()
    vault: VaultConfig = VaultConfig()
    venues: list[VenueConfig] = Field(default_factory=list, description="live CCXT venue accounts ([[venues]])")
    exchange_urls: dict[str, str] = Field(
        default_factory=dict, description="ccxt exchange id -> base URL (scheme://host[:port]) every REST and "
        "websocket request to that exchange goes to instead of its own hosts (a relay on the box, or the test "
        "emulator); used by live venues, paper-live bars and `lyractl data fetch`. http only to loopback")
    logging: LoggingConfig = LoggingConfig()
    source: Path | None = Field(None, exclude=True)

    @field_validator("exchange_urls")
    @classmethod
    def _exchange_urls(cls, value: dict[str, str]) -> dict[str, str]:
        from appliance.venues.ccxt.urls import check_base_url

        for exchange_id in value:
            if not re.fullmatch(r"[a-z0-9_]{2,32}", exchange_id):
                raise ValueError(f"{exchange_id!r} is not a ccxt exchange id (e.g. binance)")
        return {k: check_base_url(f"exchange_urls.{k}", v) for k, v in value.items()}

    @pydantic.model_validator(mode="after")
    def _unique_venues(self) -> "LyraConfig":
        names = [v.name for v in self.venues] + [self.paper.venue]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"venues: names must be unique (the paper venue is {self.paper.venue!r}); repeated: {dupes}")
        return self

    @property
    def live(self) -> bool:
        """Live mode (wall-clock time, bars polled from exchanges): a CCXT venue is configured, or the
        paper venue trades live market data (``[paper] market_data = "live"``). The paper venue
        then does not replay: it exists only with live market data."""
        return bool(self.venues) or self.paper.market_data == "live"

    @property
    def paper_live(self) -> bool:
        """The paper venue trades live bars of ``[paper] live_exchange`` (a dry run)."""
        return self.paper.market_data == "live"

    @property
    def db_path(self) -> Path:
        return self.storage.data_dir / "lyra.db"


def load_config(path: Path | str | None = None, env: dict[str, str] | None = None) -> LyraConfig:
    """Load, validate and resolve the configuration.

    Args:
        path: TOML file; default ``$LYRA_CONFIG`` or the shipped firmware-config/lyra.toml.
        env: environment to read overrides from (default ``os.environ``).

    Raises:
        ConfigError: unreadable file, TOML syntax error, unknown key or invalid value; the message
            names the file and the dotted key.
    """
    env = dict(os.environ if env is None else env)
    source = Path(path or env.get("LYRA_CONFIG") or DEFAULT_CONFIG).expanduser()
    try:
        raw = tomllib.loads(source.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found (set LYRA_CONFIG or pass --config)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: TOML syntax error: {exc}") from None
    try:
        config = LyraConfig.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None
    base = source.resolve().parent

    def resolve(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    if env.get("LYRA_HOME"):
        config.storage.data_dir = Path(env["LYRA_HOME"])
    if env.get("LYRA_DATASET"):
        config.paper.dataset = Path(env["LYRA_DATASET"]).expanduser().resolve()
    config.storage.data_dir = resolve(config.storage.data_dir) if not env.get("LYRA_HOME") else Path(env["LYRA_HOME"]).expanduser().resolve()
    config.paper.dataset = resolve(config.paper.dataset)
    tls = config.server.tls
    for name in ("cert", "key", "client_ca"):
        value = getattr(tls, name).expanduser()
        setattr(tls, name, value if value.is_absolute() else config.storage.data_dir / value)
    if env.get("CREDENTIALS_DIRECTORY") and config.vault.key_file is None:
        # systemd LoadCredential=lyra-vault.key:/etc/lyra/vault.key (unattended boot)
        candidate = Path(env["CREDENTIALS_DIRECTORY"]) / "lyra-vault.key"
        if candidate.exists():
            config.vault.key_file = candidate
    elif config.vault.key_file is not None:
        config.vault.key_file = resolve(config.vault.key_file)
    config.source = source
    return config
