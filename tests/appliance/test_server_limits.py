"""How many connections a worker keeps, from its open-file limit (the real server's test
with a school of connections is in test_server.py; these fake only the limits)."""

from __future__ import annotations

import logging
import resource

import pytest

from appliance import server


class Limits:
    """RLIMIT_NOFILE as a process would see it: a soft limit it may raise to the hard one."""

    def __init__(self, soft: int, hard: int):
        self.soft, self.hard = soft, hard

    def get(self, which):
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def set(self, which, limits):
        soft, hard = limits
        if hard != self.hard or (self.hard != resource.RLIM_INFINITY and soft > self.hard):
            raise ValueError("not allowed")
        self.soft = soft


@pytest.fixture
def limits(monkeypatch):
    def install(soft: int, hard: int) -> Limits:
        found = Limits(soft, hard)
        monkeypatch.setattr(server.resource, "getrlimit", found.get)
        monkeypatch.setattr(server.resource, "setrlimit", found.set)
        return found

    return install


def test_systemds_default_soft_limit_is_raised_to_fit_the_connections(limits):
    found = limits(1024, 524288)  # what a systemd service gets unless its unit says more
    assert server._connections_that_fit(1000) == 1000
    assert found.soft == 1000 + server.FILES_BESIDE_CONNECTIONS


def test_a_limit_already_high_enough_is_left_alone(limits):
    found = limits(20000, 20000)
    assert server._connections_that_fit(1000) == 1000
    assert found.soft == 20000


def test_a_low_hard_limit_lowers_the_connection_limit_and_says_so(limits, caplog):
    limits(1024, 1024)
    with caplog.at_level(logging.WARNING, logger="schoolbox.server"):
        kept = server._connections_that_fit(1000)
    assert kept == 1024 - server.FILES_BESIDE_CONNECTIONS
    assert "connection_limit_lowered" in caplog.text
