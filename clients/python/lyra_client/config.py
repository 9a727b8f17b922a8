"""Local credential store of lyractl: ``tokens.json`` in the user's config directory.

Location: ``$LYRA_CONFIG_DIR/tokens.json`` if ``LYRA_CONFIG_DIR`` is set, else
``platformdirs.user_config_dir("lyra")/tokens.json``. The directory is created with mode
0700 and the file is always written with mode 0600: a new file is created with
``os.open(..., 0o600)`` next to the old one and atomically renamed over it, so the tokens are
never world-readable, not even briefly.

Shape::

    {"version": 1,
     "profiles": {"default": {"target": "127.0.0.1:7443", "username": "alice", "role": "trader",
                              "access_token": "...", "refresh_token": "...",
                              "access_expires_at": "2025-01-01T00:00:00Z"},
                  "prod": {"target": "lyra.example:7443", "ca_cert": "/home/op/lyra-ca.pem",
                           "client_cert": "/home/op/op.crt", "client_key": "/home/op/op.key",
                           "mfa_enrollment_required": true, ...}}}

TLS settings are stored as absolute *paths*, never as file contents (the client key stays in
its own file). ``mfa_enrollment_required`` is present only while the session may do nothing
but enroll TOTP. Passwords, passphrases and service tokens are never stored.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

FILE_NAME = "tokens.json"
FILE_MODE = 0o600
DIR_MODE = 0o700


def config_dir() -> Path:
    """Directory of the credential store (``LYRA_CONFIG_DIR`` or the platform config dir)."""
    override = os.environ.get("LYRA_CONFIG_DIR")
    if override:
        return Path(override).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("lyra"))


def tokens_path() -> Path:
    """Full path of ``tokens.json``."""
    return config_dir() / FILE_NAME


class TokenStore:
    """Read/write the profiles of ``tokens.json``.

    Parameters:
        path: file to use (default :func:`tokens_path`).

    Raises (on read): ``ValueError`` if the file exists but is not valid JSON of the
    expected shape. Missing file = no profiles.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else tokens_path()

    def _load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"version": 1, "profiles": {}}
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path}: not valid JSON ({exc.msg}); delete it and log in again") from None
        if not isinstance(data, dict) or not isinstance(data.get("profiles", {}), dict):
            raise ValueError(f"{self.path}: unexpected content; delete it and log in again")
        data.setdefault("profiles", {})
        data.setdefault("version", 1)
        return data

    def _write(self, data: dict[str, Any]) -> None:
        directory = self.path.parent
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        payload = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")
        fd, tmp_name = -1, ""
        for _ in range(100):
            tmp_name = str(directory / f".{FILE_NAME}.{secrets.token_hex(8)}.tmp")
            try:
                fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
                break
            except FileExistsError:
                continue
        if fd < 0:
            raise OSError(f"cannot create a temporary file in {directory}")
        try:
            try:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, FILE_MODE)  # exact mode whatever the umask
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_name, self.path)
        except BaseException:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            raise

    def get(self, profile: str) -> dict[str, Any]:
        """The profile's entry (``{}`` if absent)."""
        entry = self._load()["profiles"].get(profile) or {}
        return dict(entry) if isinstance(entry, dict) else {}

    def save(self, profile: str, entry: dict[str, Any]) -> None:
        """Replace the profile's entry."""
        data = self._load()
        data["profiles"][profile] = entry
        self._write(data)

    def profiles(self) -> dict[str, dict[str, Any]]:
        """All profiles by name (copies of the entries, including tokens: callers that
        display them must leave the tokens out)."""
        return {
            name: dict(entry)
            for name, entry in sorted(self._load()["profiles"].items())
            if isinstance(entry, dict)
        }

    def update(self, profile: str, **fields: Any) -> None:
        """Set some fields of an existing profile (``None`` removes the field); no-op if the
        profile does not exist."""
        data = self._load()
        entry = data["profiles"].get(profile)
        if not isinstance(entry, dict):
            return
        for key, value in fields.items():
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = value
        self._write(data)

    def update_tokens(self, profile: str, access_token: str, refresh_token: str) -> None:
        """Store a rotated token pair, keeping the profile's other fields."""
        data = self._load()
        entry = data["profiles"].get(profile) or {}
        entry["access_token"] = access_token
        entry["refresh_token"] = refresh_token
        data["profiles"][profile] = entry
        self._write(data)

    def delete(self, profile: str) -> bool:
        """Remove the profile; returns whether it existed."""
        data = self._load()
        existed = data["profiles"].pop(profile, None) is not None
        if existed:
            self._write(data)
        return existed
