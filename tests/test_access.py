"""The access policy of core.access: loopback or exposed, the password check, allowed Host
names, and model folders confined to the roots (one answer outside, existing or not)."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import pytest

from core import access
from core.errors import PairError
from core.jobs.add_pair import add_pair
from core.jobs.validate import validate_pair

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


@pytest.mark.unit
@pytest.mark.parametrize("address,loop", [
    ("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("", False), (None, False), ("::", False),
    ("192.168.1.5", False), ("myhost.lab", False)])
@pytest.mark.unit
def test_is_loopback(address, loop):
    assert access.is_loopback(address) is loop


@pytest.mark.unit
def test_password_compared_in_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(access.hmac, "compare_digest",
                        lambda a, b: calls.append((a, b)) or real(a, b))
    assert access.check_password("s3cret", "s3cret")
    assert not access.check_password("s3cre", "s3cret")
    assert not access.check_password("", "s3cret")
    assert access.check_password("pässwörd", "pässwörd")  # non-ASCII (compare_digest on bytes)
    assert len(calls) == 4


@pytest.mark.unit
def test_password_from_environment(monkeypatch):
    monkeypatch.delenv(access.PASSWORD_VAR, raising=False)
    assert access.password() is None
    monkeypatch.setenv(access.PASSWORD_VAR, "")
    assert access.password() is None  # empty is unset: no sign-in with an empty secret
    monkeypatch.setenv(access.PASSWORD_VAR, "x")
    assert access.password() == "x"
    line = access.refusal("0.0.0.0")
    assert "SHIFTLENS_PASSWORD" in line and "\n" not in line


@pytest.mark.unit
def test_host_allowed(monkeypatch):
    monkeypatch.delenv(access.HOSTS_VAR, raising=False)
    ok = ["localhost", "localhost:8501", "127.0.0.1", "127.0.0.1:8501", "[::1]:8501",
          "LOCALHOST.", "[::1]"]
    bad = ["evil.example", "evil.example:8501", None, "", "127.0.0.1.evil.example",
           "127.0.0.1:abc", "user@127.0.0.1", "127.0.0.1/x", "localhost.evil.example",
           "10.0.0.5"]
    assert all(access.host_allowed(h) for h in ok), [h for h in ok if not access.host_allowed(h)]
    assert not any(access.host_allowed(h) for h in bad), [h for h in bad if access.host_allowed(h)]
    monkeypatch.setenv(access.HOSTS_VAR, " shiftlens.lab , 10.0.0.5 ")
    assert access.host_allowed("shiftlens.lab:8501") and access.host_allowed("10.0.0.5")
    assert not access.host_allowed("evil.example")
    monkeypatch.setenv(access.HOSTS_VAR, "*")
    assert access.host_allowed("evil.example")


@pytest.mark.unit
def test_model_roots_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv(access.ROOTS_VAR, raising=False)
    monkeypatch.delenv("SHIFTLENS_UPLOADS", raising=False)
    cache = tmp_path / "cache"
    assert access.model_roots(cache) == [tmp_path / "uploads" / "models", access.ASSETS]
    monkeypatch.setenv(access.ROOTS_VAR, os.pathsep.join([str(tmp_path / "a"), "", "b/../c"]))
    assert access.model_roots(cache) == [tmp_path / "a", Path.cwd() / "c"]


def _answer(spec: str, roots) -> str:
    try:
        ref = access.confine_model(spec, roots)
    except PairError as e:
        return str(e)
    return f"ok: {ref.local or ref.spec}"


@pytest.mark.unit
def test_confine_model_one_answer_outside(tmp_path, monkeypatch):
    root = tmp_path / "root"
    model = root / "m"
    model.mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (root / "link").symlink_to(outside)  # a link inside a root that points out
    monkeypatch.chdir(tmp_path)
    roots = [root]
    assert _answer(str(model), roots) == f"ok: {model}"
    assert _answer("root/m", roots) == f"ok: {model}"  # relative to the working folder
    assert _answer("Qwen/Qwen2.5-Math-7B", roots) == "ok: Qwen/Qwen2.5-Math-7B"  # a hub id
    # outside the roots: existing folder, existing file, missing path, escapes by '..' or a
    # link: the answer differs only by the spec it quotes
    specs = [str(outside), str(outside / "config.json"), str(tmp_path / "nope"),
             "root/../secret", str(root / "link"), "/etc", "~/x", "../x", "./secret"]
    answers = {s: _answer(s, roots) for s in specs}
    assert {a.replace(s, "SPEC") for s, a in answers.items()} == \
        {access.outside_roots("SPEC")}, answers
    # a hub-shaped spec that happens to name a folder outside the roots is a hub id: the disk
    # outside is not consulted ("secret/m" does not exist, "root/m" would be inside)
    (outside / "m").mkdir()
    assert _answer("secret/m", roots) == _answer("secret/zz", roots).replace("zz", "m")


@pytest.mark.model
def test_validate_refuses_outside_roots_alike(tiny_pair, tmp_path, monkeypatch):
    """validate_pair with model roots: an existing model folder outside the roots and a
    missing path get the same report; a folder inside passes its checks."""
    roots = [tiny_pair["root"]]
    existing = tmp_path / "copy"
    existing.symlink_to(tiny_pair["tuned"])  # a real model, reachable only through a link
    missing = tmp_path / "missing"

    def rows(tuned):
        r = validate_pair(str(tiny_pair["base"]), str(tuned), prompts=str(tiny_pair["prompts"]),
                          model_roots=roots)
        return r, [(x["status"], x["check"], x["message"].replace(str(tuned), "SPEC"))
                   for x in r.rows()]

    r1, a = rows(existing)
    r2, b = rows(missing)
    assert not r1.ok and a == b
    assert ("error", "tuned: weights", access.outside_roots("SPEC")) in a
    ok, _ = rows(tiny_pair["tuned"])
    assert ok.ok, ok.text()
    # without roots (the CLI, a loopback server) the link is a model like any other
    assert validate_pair(str(tiny_pair["base"]), str(existing),
                         prompts=str(tiny_pair["prompts"])).ok


@pytest.mark.model
def test_add_pair_queues_nothing_outside_roots(tiny_pair, tmp_path):
    cache = tmp_path / "cache"
    res = add_pair(str(tiny_pair["base"]), "/etc", str(tiny_pair["prompts"]), cache=cache,
                   model_roots=[tiny_pair["root"]])
    assert not res.jobs and not res.report.ok
    assert not (cache / ".jobs").exists()


@pytest.fixture
def exposed_app(app_cache, monkeypatch):
    """AppTest of app/main.py as if the server were bound to 0.0.0.0."""
    from streamlit import config
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SHIFTLENS_CACHE", str(app_cache))
    saved = {k: config.get_option(k) for k in ("server.address", "client.showErrorDetails")}
    config.set_option("server.address", "0.0.0.0")
    try:
        yield lambda: AppTest.from_file(MAIN, default_timeout=60)
    finally:
        for k, v in saved.items():
            config.set_option(k, v)


@pytest.mark.model
def test_gate_refuses_without_password(exposed_app, monkeypatch):
    monkeypatch.delenv(access.PASSWORD_VAR, raising=False)
    at = exposed_app()
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] and "SHIFTLENS\\_PASSWORD" in at.error[0].value
    assert not at.sidebar.selectbox and not at.header and not at.button and not at.text_input


@pytest.mark.model
def test_gate_refuses_without_the_guard(exposed_app, monkeypatch):
    """Exposed but not behind app/serve.py's guard (`streamlit run app/main.py`): uploads and
    metrics would be open before sign-in, so the gate serves nothing."""
    from app.ui.access import NOT_GUARDED

    monkeypatch.setenv(access.PASSWORD_VAR, "s3cret")
    at = exposed_app()
    at.run()
    assert len(at.error) == 1 and "serves only through app/serve" in at.error[0].value, \
        NOT_GUARDED
    assert not at.text_input and not at.sidebar.selectbox


def sign_in(at, password):
    at.text_input(key="sign_in_password").input(password)
    at.button[0].click()
    at.run()
    return [e.value for e in at.error]


@pytest.mark.model
def test_gate_sign_in(exposed_app, monkeypatch, behind_guard):
    monkeypatch.setenv(access.PASSWORD_VAR, "s3cret")
    monkeypatch.setenv("SHIFTLENS_SIGNIN_DELAY", "0")
    behind_guard()
    at = exposed_app()
    at.run()
    assert not at.sidebar.selectbox and not at.header  # no run picker, no page
    assert sign_in(at, "wrong") == ["Wrong password."] and not at.sidebar.selectbox
    assert sign_in(at, "s3cret") == []
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.selectbox(key="run_picker").value == "demo-rl"
    at.run()  # a later rerun of the same session stays signed in
    assert at.sidebar.selectbox(key="run_picker").value == "demo-rl"


@pytest.mark.model
def test_session_id_on_another_connection_is_not_signed_in(exposed_app, monkeypatch,
                                                           behind_guard):
    """The signed-in session, run for a connection with another browser's cookie (its id
    copied into a new socket) or with none, is not signed in: one line, nothing else. (The
    guard does not even resume it there: tests/test_guard.py.)"""
    from app.ui.access import NO_COOKIE, OTHER_BROWSER

    monkeypatch.setenv(access.PASSWORD_VAR, "s3cret")
    behind_guard(signed_in=True)
    at = exposed_app()
    at.run()
    assert at.sidebar.selectbox(key="run_picker").value == "demo-rl"
    for token, line in ((access_token(), OTHER_BROWSER), ("", NO_COOKIE)):
        monkeypatch.setattr("app.ui.access.connection", lambda t=token: (t, "10.6.6.6"))
        at.run()
        assert [e.value for e in at.error] == [line]
        assert not at.sidebar.selectbox and not at.text_input and not at.header


def access_token() -> str:
    from core import signin

    return signin.tokens().issue()


@pytest.mark.model
def test_guessing_from_many_sessions_locks_the_address_out(exposed_app, monkeypatch,
                                                          behind_guard, caplog):
    """Wrong passwords from one address in many sessions add up: at the limit the address is
    locked out (even the right password is refused unchecked), logged with the address;
    another address still signs in."""
    import logging

    monkeypatch.setenv(access.PASSWORD_VAR, "s3cret")
    monkeypatch.setenv("SHIFTLENS_SIGNIN_DELAY", "0")
    monkeypatch.setenv("SHIFTLENS_SIGNIN_FAILURES", "3")
    caplog.set_level(logging.WARNING, "shiftlens.access")
    token = behind_guard(address="10.9.9.9")
    for _ in range(3):  # three sessions, one wrong password each
        at = exposed_app()
        at.run()
        assert sign_in(at, "guess") == ["Wrong password."]
    at = exposed_app()
    at.run()
    said = sign_in(at, "s3cret")
    assert len(said) == 1 and said[0].startswith("Too many wrong passwords from your address")
    assert not at.sidebar.selectbox
    assert "wrong password from 10.9.9.9 (1 of 3" in caplog.text
    assert "wrong password from 10.9.9.9; 3 in 15 min from this address: locked out" \
        in caplog.text
    monkeypatch.setattr("app.ui.access.connection", lambda: (token, "10.8.8.8"))
    at = exposed_app()
    at.run()
    assert sign_in(at, "s3cret") == []
    assert at.sidebar.selectbox(key="run_picker").value == "demo-rl"
