"""trust/: keys on disk, RFC 7638 thumbprints, and the JWS alg/typ policy."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from trust import jws
from trust.errors import ConfigError, VerificationError
from trust.keyring import Keyring, StaticKeyFetcher, VerifyingKey
from trust.keys import Alg, generate, load_pem, save_pem, thumbprint


def test_rfc8037_ed25519_thumbprint_vector() -> None:
    # RFC 8037 appendix A.3: the thumbprint of the example Ed25519 public key.
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_thumbprint_ignores_optional_members() -> None:
    key = generate()
    assert thumbprint(key.public_jwk(nbf=1, exp=2)) == key.kid


@pytest.mark.parametrize("alg", [Alg.EDDSA, Alg.ES256])
def test_pem_round_trip_is_owner_only(tmp_path: Path, alg: Alg) -> None:
    key = generate(alg)
    path = tmp_path / "k.pem"
    save_pem(key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_pem(path).kid == key.kid


def test_encrypted_pem_needs_passphrase(tmp_path: Path) -> None:
    key = generate()
    path = tmp_path / "k.pem"
    save_pem(key, path, b"correct horse")
    assert load_pem(path, b"correct horse").kid == key.kid
    with pytest.raises(ConfigError, match="cannot load key file"):
        load_pem(path, b"wrong")


def test_world_readable_key_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    save_pem(generate(), path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_pem(path)


def test_save_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    save_pem(generate(), path)
    with pytest.raises(FileExistsError):
        save_pem(generate(), path)


class RecordingFetcher:
    """Fails the test if a key is looked up: proves refusal happens before any key use."""

    def __init__(self) -> None:
        self.calls = 0

    def get_key(self, member_id: str, kid: str) -> VerifyingKey | None:
        self.calls += 1
        return None


def test_parse_rejects_none_and_hmac_before_key_lookup() -> None:
    import base64
    import json

    def token(alg: str) -> str:
        def part(doc: dict[str, object]) -> str:
            return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
        return f"{part({'alg': alg, 'typ': 'tongban-msg+jwt', 'kid': 'k'})}.{part({'iss': 'x'})}."

    for alg in ("none", "HS256", "HS512", "RS256", "PS256", "ES512"):
        with pytest.raises(VerificationError) as info:
            jws.parse(token(alg), jws.TokenType.MESSAGE)
        assert info.value.code.value == "bad-signature"


def test_typ_is_enforced_per_token_type() -> None:
    key = generate()
    token = jws.sign({"iss": "CN-440403"}, key, jws.TokenType.SSO)
    with pytest.raises(VerificationError) as info:
        jws.parse(token, jws.TokenType.MESSAGE)
    assert info.value.code.value == "malformed"
    assert jws.parse(token, jws.TokenType.SSO).kid == key.kid


@pytest.mark.parametrize("alg", [Alg.EDDSA, Alg.ES256])
def test_sign_and_verify_both_algorithms(alg: Alg) -> None:
    key = generate(alg)
    token = jws.sign({"iss": "CN-440403"}, key, jws.TokenType.MESSAGE)
    parsed = jws.parse(token, jws.TokenType.MESSAGE)
    verifying = Keyring([StaticKeyFetcher([VerifyingKey.from_jwk("CN-440403",
                                                                 key.public_jwk())])])
    jws.verify_signature(parsed, verifying.lookup("CN-440403", parsed.kid, now=0))


def test_key_of_other_algorithm_refused() -> None:
    ed, ec = generate(Alg.EDDSA), generate(Alg.ES256)
    token = jws.sign({"iss": "CN-440403"}, ed, jws.TokenType.MESSAGE)
    with pytest.raises(VerificationError) as info:
        jws.verify_signature(jws.parse(token, jws.TokenType.MESSAGE),
                             VerifyingKey.from_jwk("CN-440403", ec.public_jwk()))
    assert info.value.code.value == "bad-signature"


def test_keyring_enforces_key_validity_and_ownership() -> None:
    key = generate()
    fetcher = StaticKeyFetcher([VerifyingKey.from_jwk("CN-440403",
                                                      key.public_jwk(nbf=100, exp=200))])
    ring = Keyring([fetcher])
    assert ring.lookup("CN-440403", key.kid, now=150).kid == key.kid
    for now in (50, 200, 10_000):
        with pytest.raises(VerificationError, match="validity"):
            ring.lookup("CN-440403", key.kid, now=now)
    with pytest.raises(VerificationError) as info:
        ring.lookup("CN-430725", key.kid, now=150)  # the key is not Taoyuan's
    assert info.value.code.value == "unknown-key"
    recorder = RecordingFetcher()
    with pytest.raises(VerificationError):
        Keyring([recorder]).lookup("CN-440403", key.kid, now=150)
    assert recorder.calls == 1


def test_jwk_with_wrong_kid_or_private_part_refused() -> None:
    key = generate()
    with pytest.raises(VerificationError, match="thumbprint"):
        VerifyingKey.from_jwk("CN-440403", {**key.public_jwk(), "kid": "forged"})
    with pytest.raises(VerificationError, match="private"):
        VerifyingKey.from_jwk("CN-440403", {**key.public_jwk(), "d": "AAAA"})


def test_check_lifetime() -> None:
    claims = {"iat": 1000, "exp": 1300}
    assert jws.check_lifetime(claims, 1100, max_skew=300, max_lifetime=300) == (1000, 1300)
    cases = {
        "expired": ({"iat": 1000, "exp": 1300}, 1300),
        "future": ({"iat": 2000, "exp": 2100}, 1000),
        "too long": ({"iat": 1000, "exp": 1301}, 1100),
        "missing": ({"iat": 1000}, 1100),
    }
    for name, (bad, now) in cases.items():
        with pytest.raises(VerificationError):
            jws.check_lifetime(bad, now, max_skew=300, max_lifetime=300)
        assert name


def test_csrf_tokens_are_bound_to_their_session() -> None:
    from trust.csrf import csrf_matches, csrf_token

    secret = b"k" * 32
    token = csrf_token(secret, "session-a")
    assert csrf_matches(token, secret, "session-a")
    assert not csrf_matches(token, secret, "session-b")
    assert not csrf_matches(token, b"x" * 32, "session-a")
    assert not csrf_matches("伪造" + token[2:], secret, "session-a")  # not ASCII: False, no error
    assert not csrf_matches("", secret, "session-a")
