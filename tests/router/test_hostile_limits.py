"""The router's connection limits as values: defaults, ``LLMROUTE_*`` variables, ``llmroute router`` flags (which win),
refusals of values that cannot work, and the connection cap a process's file descriptors allow.

The limits in action (deadlines, 431/414/413, the cap) are tested against the real process in ``test_hostile.py``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from llmroute.router.limits import ENV, FD_RESERVE, Limits, connection_cap, flag

from .conftest import ROOT

pytestmark = pytest.mark.router


def test_defaults_are_safe_for_a_router_behind_a_service() -> None:
    limits = Limits.from_env({})
    assert limits == Limits()
    assert limits.head_timeout_s <= 10 and limits.body_timeout_s <= 60 and limits.idle_timeout_s <= 75
    assert limits.max_url_bytes < limits.max_head_bytes <= 64 * 1024 and limits.max_headers <= 100


def test_the_environment_sets_each_limit_and_a_flag_wins() -> None:
    env = {ENV["head_timeout_s"]: "2.5", ENV["max_connections"]: "300", ENV["max_headers"]: " "}
    limits = Limits.from_env(env)
    assert (limits.head_timeout_s, limits.max_connections, limits.max_headers) == (2.5, 300, Limits().max_headers)
    assert limits.replace({"head_timeout_s": 4.0, "max_connections": None}).head_timeout_s == 4.0
    assert limits.replace({"head_timeout_s": 4.0, "max_connections": None}).max_connections == 300


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLMROUTE_HEAD_TIMEOUT": "soon"}, 'LLMROUTE_HEAD_TIMEOUT must be a number, got "soon"'),
        ({"LLMROUTE_BODY_TIMEOUT": "0"}, "LLMROUTE_BODY_TIMEOUT (--body-timeout) must be a positive finite number"),
        ({"LLMROUTE_IDLE_TIMEOUT": "inf"}, "LLMROUTE_IDLE_TIMEOUT (--idle-timeout) must be a positive finite number"),
        ({"LLMROUTE_MAX_CONNECTIONS": "1.5"}, 'LLMROUTE_MAX_CONNECTIONS must be a number, got "1.5"'),
        ({"LLMROUTE_MAX_URL_BYTES": "70000"}, "the URL limit (70000 bytes) must be below the head limit (65536 bytes)"),
    ],
    ids=["not-a-number", "zero", "infinite", "fraction-of-a-count", "url-over-head"],
)
def test_values_that_cannot_work_are_refused_with_their_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Limits.from_env(env)


def test_every_limit_has_a_flag_and_a_variable() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "llmroute", "router", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    for name, var in ENV.items():
        assert f"--{flag(name)}" in help_text and var in help_text


def test_a_bad_flag_value_exits_2_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llmroute", "router", "--config", "none.yaml", "--max-headers", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "llmroute: error: LLMROUTE_MAX_HEADERS (--max-headers) must be a positive finite number, got 0"
    )


@pytest.mark.parametrize(
    ("configured", "fd_limit", "cap"),
    [
        (4096, 1_048_576, 4096),  # a container's usual limit: as configured
        (4096, 1024, (1024 - FD_RESERVE) // 2),  # a low limit: half of what is left, upstream connections need the rest
        (10, 20, 1),  # never zero
    ],
)
def test_the_connection_cap_fits_the_file_descriptors(configured: int, fd_limit: int, cap: int) -> None:
    assert connection_cap(configured, fd_limit) == cap
