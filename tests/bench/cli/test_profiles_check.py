"""``heptathlon profiles check`` runs the escape probe and shows each attempt; a sandbox that lets
one through fails the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from heptathlon.runners import sandbox as S


def _check(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "heptathlon.bench.cli", "profiles", "check", "cpu-1core",
                           "--spin-seconds", "0.2", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "250", **(env or {})}, check=False)


@pytest.mark.skipif(S._probe_cached("bwrap") is not None, reason="bubblewrap does not work here")
def test_profiles_check_shows_every_escape_attempt_blocked():
    proc = _check()
    assert "escape probe (bwrap): each attempt must be blocked" in proc.stdout, proc.stdout + proc.stderr
    assert "GOT THROUGH" not in proc.stdout
    for needle in ("/etc/shadow", "heptathlon.db", "127.0.0.1:5432", "setuid(0)", "cgroup"):
        assert needle in proc.stdout, needle
    rows = json.loads(_check("--json").stdout)
    escape = next(r for r in rows if r["control"] == "sandbox.escape")
    assert escape["ok"] is True and escape["mechanism"] == "bwrap"
    assert escape["observed"] and all(a["blocked"] for a in escape["observed"])


def test_profiles_check_without_a_sandbox_shows_what_gets_through():
    proc = _check(env={S.SANDBOX_ENV: "none"})
    assert "escape probe (no sandbox)" in proc.stdout, proc.stdout + proc.stderr
    assert "GOT THROUGH" in proc.stdout
    assert "code-carrying kinds are refused on this machine" in proc.stderr
