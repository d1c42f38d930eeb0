"""API keys: loaded from file or env, checked in constant time; per-key token buckets."""

from __future__ import annotations

import pytest

from core.config import SecurityConfig
from core.errors import Overloaded, Unauthenticated
from gateway.auth import Authenticator, TokenBucket, load_keys

KEY_A = "a" * 32
KEY_B = "b" * 24


def test_keys_from_file_and_env(tmp_path, monkeypatch):
    f = tmp_path / "keys.yaml"
    f.write_text(f"alice: {KEY_A}\n")
    monkeypatch.setenv("AIGC_TEST_KEYS", f"bob:{KEY_B}")
    keys = load_keys(SecurityConfig(api_keys_file=str(f), api_keys_env="AIGC_TEST_KEYS"))
    assert keys == {"alice": KEY_A, "bob": KEY_B}


def test_short_keys_are_refused(tmp_path):
    f = tmp_path / "keys.yaml"
    f.write_text("weak: 1234\n")
    with pytest.raises(ValueError, match="16 characters"):
        load_keys(SecurityConfig(api_keys_file=str(f)))


def test_bearer_header_identifies_the_key_name(tmp_path):
    f = tmp_path / "keys.yaml"
    f.write_text(f"alice: {KEY_A}\nbob: {KEY_B}\n")
    auth = Authenticator(SecurityConfig(api_keys_file=str(f)))
    assert auth.who(f"Bearer {KEY_B}") == "bob"
    assert auth.who(f"bearer {KEY_A}") == "alice"
    assert auth.who(f"Basic {KEY_A}") is None
    assert auth.who("Bearer " + "c" * 32) is None
    assert auth.who(None) is None
    assert auth.check(f"Bearer {KEY_A}") == "alice"
    with pytest.raises(Unauthenticated, match="missing API key"):
        auth.check(None)
    with pytest.raises(Unauthenticated, match="invalid API key"):
        auth.check("Bearer " + "c" * 32)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_is_per_key_with_a_retry_hint(tmp_path):
    f = tmp_path / "keys.yaml"
    f.write_text(f"alice: {KEY_A}\nbob: {KEY_B}\n")
    clock = FakeClock()
    auth = Authenticator(
        SecurityConfig(api_keys_file=str(f), rate_limit_per_s=0.5, rate_limit_burst=1), clock
    )
    assert auth.check(f"Bearer {KEY_A}") == "alice"
    with pytest.raises(Overloaded) as err:
        auth.check(f"Bearer {KEY_A}")
    assert err.value.details["retry_after_s"] == pytest.approx(2.0)  # one token at 0.5/s
    assert auth.check(f"Bearer {KEY_B}") == "bob"  # another key has its own bucket
    clock.now += 1.5
    with pytest.raises(Overloaded) as err:
        auth.check(f"Bearer {KEY_A}")
    assert err.value.details["retry_after_s"] == pytest.approx(0.5)
    clock.now += 0.5
    assert auth.check(f"Bearer {KEY_A}") == "alice"  # refilled exactly when it said


def test_token_bucket_allows_burst_then_asks_to_wait():
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(1.0)
    clock.now += 0.25
    assert bucket.take() == pytest.approx(0.75)
    clock.now += 10  # refills to the burst, never beyond
    assert [bucket.take() for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(1.0)]
