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


class ServerConfig(_Section):
    listen: str = Field("127.0.0.1:7443", description="gRPC address; loopback only until TLS lands")
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)

    @field_validator("listen")
    @classmethod
    def _loopback(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("must be HOST:PORT")
        if host not in ("127.0.0.1", "localhost", "[::1]", "::1"):
            raise ValueError("only loopback addresses are allowed until TLS is configured (Security issue); "
                             "reach the box through an SSH tunnel")
        return value


class MetricsConfig(_Section):
    enabled: bool = True
    listen: str = Field("127.0.0.1:9464", description="Prometheus /metrics address (loopback)")


class StorageConfig(_Section):
    data_dir: Path = Field(Path("~/.local/share/lyra"), description="database, keys, run files")
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"


class PaperConfig(_Section):
    venue: str = Field("paper", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    dataset: Path = Field(Path("../../shared/data/candles"), description="folder of candle CSVs")
    timeframe: str = "5m"
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
    access_token_ttl_s: int = Field(900, ge=30, le=86_400)
    refresh_token_ttl_s: int = Field(7 * 86_400, ge=300)


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
    logging: LoggingConfig = LoggingConfig()
    source: Path | None = Field(None, exclude=True)

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
    config.source = source
    return config
