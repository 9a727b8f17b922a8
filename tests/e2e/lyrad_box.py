"""A data folder with real ``lyrad`` and ``lyractl`` processes, for the e2e tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def wait_for(predicate, timeout: float, what: str):
    """Poll ``predicate`` every 0.2 s until it returns something truthy (returned), else fail
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Box:
    """One appliance: ``config`` (a lyra.toml whose data_dir is under ``tmp``), the CLI profile
    folder ``tmp/cli``, and lyrad's log in ``tmp/lyrad.log``. The environment is cleared of the
    operator's own LYRA_* settings."""

    def __init__(self, tmp: Path, config: Path, admin_password: str) -> None:
        self.tmp = tmp
        self.admin_password = admin_password
        self.env = {**os.environ, "LYRA_CONFIG": str(config), "LYRA_CONFIG_DIR": str(tmp / "cli")}
        for name in ("LYRA_HOME", "LYRA_DATASET", "LYRA_TOKEN", "LYRA_PASSWORD"):
            self.env.pop(name, None)
        self.target = ""

    def lyrad(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "lyrad"), *args], env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=120)

    def init(self) -> None:
        result = self.lyrad("init", env={"LYRA_ADMIN_PASSWORD": self.admin_password})
        assert result.returncode == 0, result.stderr

    def lyractl(self, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run([str(BIN / "lyractl"), "--target", self.target, *args], env=self.env, input=stdin,
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"lyractl {args}: {result.stderr}"
        return result

    def json(self, *args: str):
        return json.loads(self.lyractl("--json", *args).stdout)

    def log(self) -> str:
        return (self.tmp / "lyrad.log").read_text()

    def start(self) -> subprocess.Popen:
        """Start ``lyrad run``, wait for its run file, log in as admin."""
        run_file = self.tmp / "data" / "lyrad.json"
        run_file.unlink(missing_ok=True)
        log = open(self.tmp / "lyrad.log", "a")
        proc = subprocess.Popen([str(BIN / "lyrad"), "run"], env=self.env, stdout=log, stderr=log)
        wait_for(lambda: run_file.exists() or proc.poll() is not None, 60, "lyrad to start")
        assert proc.poll() is None, self.log()[-3000:]
        self.target = json.loads(run_file.read_text())["grpc"]
        self.lyractl("login", "--username", "admin", "--password-stdin", stdin=self.admin_password + "\n")
        return proc
