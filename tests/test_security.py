"""aebook.security: pickle inspection, AES-GCM of .aeb files, membership inference."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aebook.codecs.bitstream import MAGIC as AEB_MAGIC
from aebook.security import (decrypt_aeb, derive_key, encrypt_aeb, generate_key, membership_attack,
                             pickle_imports, reconstruction_errors)

KEY = bytes(range(32))
payloads = st.binary(max_size=300).map(lambda b: AEB_MAGIC + b)


class _Exec:
    def __reduce__(self):
        return (exec, ("x = 1",))


def test_pickle_imports_finds_code_without_running_it(tmp_path):
    bad, good, plain = tmp_path / "bad.pt", tmp_path / "good.pt", tmp_path / "bad.pkl"
    torch.save({"w": _Exec()}, bad)
    torch.save({"w": torch.zeros(2)}, good)
    plain.write_bytes(pickle.dumps(_Exec()))
    assert "builtins.exec" in pickle_imports(bad) and "builtins.exec" in pickle_imports(plain)
    assert all(name.startswith(("torch", "collections")) for name in pickle_imports(good))
    with pytest.raises(FileNotFoundError):
        pickle_imports(tmp_path / "missing.pt")
    (tmp_path / "junk").write_bytes(b"\xff\x00garbage")
    with pytest.raises(ValueError, match="pickle"):
        pickle_imports(tmp_path / "junk")


@settings(max_examples=50, deadline=None)
@given(payloads, st.binary(max_size=20))
def test_round_trip(data, aad):
    blob = encrypt_aeb(data, KEY, associated_data=aad)
    assert decrypt_aeb(blob, KEY, associated_data=aad) == data
    assert len(data) < 12 or data[4:] not in blob[18:]  # the payload is not stored in clear


@settings(max_examples=50, deadline=None)
@given(payloads, st.data())
def test_any_flipped_bit_or_cut_is_refused(data, draw):
    blob = encrypt_aeb(data, KEY)
    pos = draw.draw(st.integers(0, len(blob) - 1))
    bit = draw.draw(st.integers(0, 7))
    flipped = bytearray(blob)
    flipped[pos] ^= 1 << bit
    with pytest.raises(ValueError):
        decrypt_aeb(bytes(flipped), KEY)
    cut = draw.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(ValueError):
        decrypt_aeb(blob[:cut], KEY)


def test_wrong_key_aad_and_bad_inputs():
    data = AEB_MAGIC + b"payload"
    blob = encrypt_aeb(data, KEY, b"to: alice")
    assert encrypt_aeb(data, KEY) != encrypt_aeb(data, KEY)  # fresh nonce each time
    with pytest.raises(ValueError, match="authentication failed"):
        decrypt_aeb(blob, generate_key(), b"to: alice")
    with pytest.raises(ValueError, match="authentication failed"):
        decrypt_aeb(blob, KEY, b"to: mallory")
    with pytest.raises(ValueError, match="16, 24 or 32"):
        encrypt_aeb(data, b"short")
    with pytest.raises(ValueError, match=".aeb"):
        encrypt_aeb(b"not an aeb", KEY)
    with pytest.raises(ValueError, match="magic"):
        decrypt_aeb(data, KEY)
    with pytest.raises(ValueError, match="raw key"):
        decrypt_aeb(blob, "a passphrase")
    assert len(generate_key()) == 32


def test_passphrase_round_trip():
    data = AEB_MAGIC + b"secret image"
    blob = encrypt_aeb(data, "correct horse battery staple")
    assert decrypt_aeb(blob, "correct horse battery staple") == data
    with pytest.raises(ValueError, match="authentication failed"):
        decrypt_aeb(blob, "wrong horse")
    with pytest.raises(ValueError, match="pass the passphrase"):
        decrypt_aeb(blob, KEY)
    salt = bytes(16)
    assert derive_key("pw", salt) == derive_key("pw", salt) != derive_key("pw2", salt)
    with pytest.raises(ValueError, match="salt"):
        derive_key("pw", b"x")
    with pytest.raises(ValueError, match="passphrase"):
        derive_key("", salt)


def test_membership_attack_scores():
    members, others = np.full(50, 0.01), np.full(50, 0.05)
    r = membership_attack(members, others)
    assert r["auc"] == 1.0 and r["accuracy"] == 1.0 and r["gap"] == pytest.approx(0.04)
    same = membership_attack(np.r_[members, others], np.r_[members, others])
    assert same["auc"] == 0.5 and same["gap"] == 0.0 and same["accuracy"] == 0.5
    with pytest.raises(ValueError, match="finite"):
        membership_attack(np.array([]), others)


def test_reconstruction_errors_per_image(digits):
    from aebook.models import build_model

    model = build_model("linear", digits.shape, 4)
    errs = reconstruction_errors(model, digits.test[:7])
    assert errs.shape == (7,) and (errs >= 0).all()
    recon = model.reconstruct(digits.test[:7])
    assert errs[3] == pytest.approx(((recon[3] - digits.test[3]) ** 2).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="N, C, H, W"):
        reconstruction_errors(model, digits.test[0])
