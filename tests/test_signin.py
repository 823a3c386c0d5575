"""core.signin and core.upload_budget: cookie tokens, session owners, wrong-password limits
per address and in all (on a fake clock), the forwarded client address, upload budgets."""

from __future__ import annotations

import logging

import pytest

from core import signin
from core.errors import AccessError
from core.upload_budget import MIB, SESSION_VAR, TOTAL_VAR, UploadBudget, session_budget

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_tokens_verify_only_their_own():
    a, b = signin.Tokens(), signin.Tokens()
    t = a.issue()
    assert a.verify(t) == t
    assert b.verify(t) is None  # another process (a restart) issued it
    nonce = t.split(".")[0]
    for forged in (None, "", nonce, nonce + ".", nonce + "." + "0" * 32, t + "x", "é.é",
                   t.replace(".", ".."), "x" * 200):
        assert a.verify(forged) is None, forged


def test_sessions_owner_and_sign_in():
    s = signin.Sessions(cap=3)
    assert not s.bind("s1", "")  # no cookie: owns nothing
    assert s.owner("s1") is None
    assert s.bind("s1", "A") and s.bind("s1", "A")
    assert not s.bind("s1", "B")  # first token wins
    assert not s.sign_in("s1", "B") and not s.signed_in("s1", "A")
    assert not s.token_signed_in("A")
    assert s.sign_in("s1", "A") and s.signed_in("s1", "A")
    assert not s.signed_in("s1", "B") and not s.signed_in("s1", "") and not s.signed_in("x", "A")
    assert s.token_signed_in("A") and not s.token_signed_in("B")
    for i in range(3):  # the cap forgets the oldest session: it is only signed out
        s.bind(f"n{i}", "C")
    assert s.owner("s1") is None and not s.signed_in("s1", "A") and not s.token_signed_in("A")


def test_throttle_waits_grow_then_lock_out(caplog):
    clock = Clock()
    t = signin.Throttle(delay=1, failures=4, global_failures=100, lockout=60, clock=clock)
    caplog.set_level(logging.INFO, "shiftlens.access")
    assert t.attempt("nope", "secret", "10.0.0.7") == signin.WRONG
    assert "Wait" in t.attempt("secret", "secret", "10.0.0.7")  # refused unchecked, even right
    assert t.refusal("10.0.0.8") is None  # another address is not slowed
    waits = []
    for _ in range(2):
        clock.now += 5
        assert t.attempt("nope", "secret", "10.0.0.7") == signin.WRONG
        waits.append(t._not_before["10.0.0.7"] - clock.now)
    assert waits == [2, 4]  # 1, 2, 4: doubling
    clock.now += 4
    assert t.attempt("nope", "secret", "10.0.0.7") == signin.WRONG  # the 4th: locked out
    clock.now += 59
    line = t.attempt("secret", "secret", "10.0.0.7")
    assert line.startswith("Too many wrong passwords from your address"), line
    assert "wrong password from 10.0.0.7" in caplog.text
    assert "10.0.0.7; 4 in 60 s from this address: locked out" in caplog.text
    assert "refused unchecked" in caplog.text
    clock.now += 2  # the lockout is over: failures forgotten, the right password works
    assert t.attempt("secret", "secret", "10.0.0.7") is None
    assert "sign-in from 10.0.0.7" in caplog.text


def test_throttle_global_limit_across_addresses(caplog):
    clock = Clock()
    t = signin.Throttle(delay=0, failures=3, global_failures=5, lockout=60, clock=clock)
    caplog.set_level(logging.WARNING, "shiftlens.access")
    for i in range(5):  # five addresses, one wrong password each: none locked alone
        assert t.attempt("x", "secret", f"10.1.0.{i}") == signin.WRONG
    line = t.attempt("secret", "secret", "10.1.0.99")
    assert line.startswith("Too many wrong passwords on this server"), line
    assert "locked for everyone" in caplog.text and "from 10.1.0.4" in caplog.text
    clock.now += 61
    assert t.attempt("secret", "secret", "10.1.0.99") is None


def test_throttle_right_password_forgets_the_address():
    clock = Clock()
    t = signin.Throttle(delay=0, failures=2, global_failures=100, lockout=60, clock=clock)
    t.attempt("x", "secret", "a")
    assert t.attempt("secret", "secret", "a") is None
    assert t.attempt("x", "secret", "a") == signin.WRONG  # counts from 1 again: not locked
    assert t.refusal("a") is None


def test_settings_read_and_refused(monkeypatch):
    for var in (signin.DELAY_VAR, signin.FAILURES_VAR, signin.LOCKOUT_VAR, SESSION_VAR):
        monkeypatch.delenv(var, raising=False)
    t = signin.Throttle.from_settings()
    assert (t.delay, t.failures, t.global_failures, t.lockout) == (1.0, 10, 100, 900.0)
    assert signin.trusted_proxies() == 0 and session_budget() == 2048 * MIB
    monkeypatch.setenv(signin.DELAY_VAR, "0")
    monkeypatch.setenv(signin.FAILURES_VAR, "3")
    assert signin.signin_delay() == 0 and signin.signin_failures() == 3
    for var, bad, reader in ((signin.FAILURES_VAR, "2.5", signin.signin_failures),
                             (signin.FAILURES_VAR, "0", signin.signin_failures),
                             (signin.DELAY_VAR, "-1", signin.signin_delay),
                             (signin.LOCKOUT_VAR, "nan", signin.lockout_seconds),
                             (TOTAL_VAR, "lots", UploadBudget.from_settings)):
        monkeypatch.setenv(var, bad)
        with pytest.raises(AccessError) as e:
            reader()
        # the settings registry's one line: the variable, the value, the default
        assert str(e.value).startswith(f"{var}: ") and "default" in str(e.value)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("peer,forwarded,proxies,want", [
    ("10.0.0.1", ["1.2.3.4"], 0, "10.0.0.1"),  # not trusted: the socket's address
    ("10.0.0.1", None, 1, "10.0.0.1"),
    ("10.0.0.1", ["1.2.3.4"], 1, "1.2.3.4"),
    ("10.0.0.1", ["6.6.6.6, 1.2.3.4"], 1, "1.2.3.4"),  # a client-made entry on the left
    ("10.0.0.1", ["6.6.6.6", "1.2.3.4, 10.0.0.2"], 2, "1.2.3.4"),
    ("10.0.0.1", ["1.2.3.4"], 2, "10.0.0.1"),  # fewer entries than proxies
    ("10.0.0.1", ["not-an-ip"], 1, "10.0.0.1"),
    ("10.0.0.1", ["[2001:db8::1]"], 1, "2001:db8::1"),
    (None, None, 0, "unknown"),
])
def test_client_address(peer, forwarded, proxies, want):
    assert signin.client_address(peer, forwarded, proxies) == want


def test_upload_budget_per_session_and_total():
    b = UploadBudget(per_session=100, total=150)
    assert b.reserve("s1", 60, held_session=0, held_total=0) is None
    line = b.reserve("s1", 50, held_session=0, held_total=0)  # 60 pending + 50 > 100
    assert "this session" in line and SESSION_VAR in line
    assert b.reserve("s2", 50, held_session=0, held_total=0) is None
    line = b.reserve("s3", 50, held_session=0, held_total=0)  # 110 pending + 50 > 150
    assert "the server" in line and TOTAL_VAR in line
    b.release("s1", 60)
    assert b.pending() == 50
    assert b.reserve("s1", 90, held_session=10, held_total=10) is None  # held counts too
    assert b.reserve("s4", 1, held_session=0, held_total=10) is not None  # 10+140+1 > 150


def test_connections_before_sign_in_capped(monkeypatch):
    monkeypatch.setenv(signin.CONNECTIONS_VAR, "2")
    monkeypatch.setenv(signin.ALL_CONNECTIONS_VAR, "3")
    c = signin.Connections.from_settings()
    assert c.open("a") is None and c.open("a") is None
    assert signin.CONNECTIONS_VAR in c.open("a")  # a third from one address
    assert c.open("b") is None
    assert signin.ALL_CONNECTIONS_VAR in c.open("c")  # a fourth in all
    c.close("a")
    assert c.open("c") is None
