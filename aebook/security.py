"""Security and privacy of models and bitstreams (chapter 5.4).

- :func:`pickle_imports` lists what a pickle (or a ``torch.save`` zip) would
  import when loaded, without loading it: the code a stranger's checkpoint
  would run.
- :func:`encrypt_aeb` / :func:`decrypt_aeb` protect ``.aeb`` bitstreams in
  transit with AES-GCM (authenticated encryption from the ``cryptography``
  package): a wrong key, a flipped bit or a truncated file is refused with one
  ``ValueError``. A passphrase instead of a key is stretched with scrypt and
  a random salt stored in the header.
- :func:`reconstruction_errors` and :func:`membership_attack` measure how much
  an autoencoder gives away about its training set.

Encrypted file layout (all header bytes are authenticated as associated data):

======  =========  ====================================================
Size    Field      Meaning
======  =========  ====================================================
4       magic      ``b"AEBX"``
1       version    1
1       kdf        0 = raw 128/192/256-bit key, 1 = scrypt passphrase
16      salt       scrypt salt (only when kdf = 1)
12      nonce      random AES-GCM nonce, never reused with a key
n + 16  sealed     ciphertext of the ``.aeb`` bytes, then the 16-byte tag
======  =========  ====================================================
"""

from __future__ import annotations

import io
import os
import pickletools
import zipfile
from pathlib import Path

import numpy as np
import torch
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from aebook.codecs.bitstream import MAGIC as AEB_MAGIC

MAGIC = b"AEBX"
VERSION = 1
NONCE_SIZE, SALT_SIZE, TAG_SIZE = 12, 16, 16
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def pickle_imports(path: str | Path) -> list[str]:
    """``module.name`` of every global a pickle file would import when unpickled, found without running it.

    Works on plain pickles and on ``torch.save`` zip archives (their ``data.pkl``).
    A safe tensor checkpoint imports only ``torch`` and ``collections``
    names; anything else (``builtins.exec``, ``os.system``, ...) is code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    raw = path.read_bytes()
    if zipfile.is_zipfile(io.BytesIO(raw)):
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            names = [n for n in z.namelist() if n.endswith("data.pkl")]
            if not names:
                raise ValueError(f"{path} is a zip file without a data.pkl: not a torch.save checkpoint")
            raw = z.read(names[0])
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(raw):
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception as err:  # pickletools raises several error types on garbage
        raise ValueError(f"{path} is not a readable pickle: {err}") from None
    return sorted({name.replace("__builtin__.", "builtins.", 1) for name in found})


def generate_key() -> bytes:
    """A fresh random 256-bit AES key (store it like a password)."""
    return AESGCM.generate_key(bit_length=256)


def derive_key(passphrase: str, salt: bytes) -> bytes:
    """Stretch a passphrase into a 256-bit key with scrypt (n=2**14, r=8, p=1) and a 16-byte ``salt``."""
    if not isinstance(passphrase, str) or not passphrase:
        raise ValueError("passphrase must be a non-empty string")
    if not isinstance(salt, (bytes, bytearray)) or len(salt) != SALT_SIZE:
        raise ValueError(f"salt must be {SALT_SIZE} bytes")
    return Scrypt(salt=bytes(salt), length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase.encode())


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) not in (16, 24, 32):
        raise ValueError("key must be 16, 24 or 32 bytes (or pass a passphrase string)")
    return bytes(key)


def encrypt_aeb(data: bytes, key: bytes | str, associated_data: bytes = b"") -> bytes:
    """Encrypt and authenticate the bytes of an ``.aeb`` file with AES-GCM.

    Parameters
    ----------
    data
        An ``.aeb`` bitstream (``AebFile.to_bytes()``); it must start with ``b"AEBK"``.
    key
        A 16/24/32-byte key (:func:`generate_key`), or a passphrase string
        (stretched by :func:`derive_key` with a random salt kept in the header).
    associated_data
        Bytes that are authenticated but not encrypted nor stored (e.g. a file
        name or recipient); decryption needs the same bytes.

    Returns
    -------
    bytes
        Header (magic, version, kdf, [salt], nonce) + ciphertext + tag.
    """
    if not isinstance(data, (bytes, bytearray)) or not bytes(data).startswith(AEB_MAGIC):
        raise ValueError("data must be the bytes of an .aeb file (starting with b'AEBK')")
    if isinstance(key, str):
        salt = os.urandom(SALT_SIZE)
        header = MAGIC + bytes([VERSION, 1]) + salt
        key = derive_key(key, salt)
    else:
        key = _check_key(key)
        header = MAGIC + bytes([VERSION, 0])
    nonce = os.urandom(NONCE_SIZE)
    header += nonce
    return header + AESGCM(key).encrypt(nonce, bytes(data), header + bytes(associated_data))


def decrypt_aeb(blob: bytes, key: bytes | str, associated_data: bytes = b"") -> bytes:
    """Check and decrypt what :func:`encrypt_aeb` wrote; return the ``.aeb`` bytes.

    Raises
    ------
    ValueError
        Not an encrypted ``.aeb`` (bad magic/version/kdf, too short), or
        authentication fails: wrong key or passphrase, other associated data,
        or any byte changed, added or removed.
    """
    if not isinstance(blob, (bytes, bytearray)):
        raise ValueError(f"expected bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < 6 or blob[:4] != MAGIC:
        raise ValueError("not an encrypted .aeb file (bad magic)")
    if blob[4] != VERSION:
        raise ValueError(f"unsupported encrypted .aeb version {blob[4]}")
    kdf = blob[5]
    if kdf not in (0, 1):
        raise ValueError(f"unknown key derivation {kdf} in encrypted .aeb header")
    head = 6 + (SALT_SIZE if kdf else 0) + NONCE_SIZE
    if len(blob) < head + TAG_SIZE:
        raise ValueError("encrypted .aeb file is truncated")
    if kdf == 1:
        if not isinstance(key, str):
            raise ValueError("this file was encrypted with a passphrase: pass the passphrase string")
        key = derive_key(key, blob[6 : 6 + SALT_SIZE])
    else:
        if isinstance(key, str):
            raise ValueError("this file was encrypted with a raw key, not a passphrase")
        key = _check_key(key)
    header, sealed = blob[:head], blob[head:]
    try:
        return AESGCM(key).decrypt(header[-NONCE_SIZE:], sealed, header + bytes(associated_data))
    except InvalidTag:
        raise ValueError("authentication failed: wrong key, other associated data, or the file was "
                         "tampered with or truncated") from None


@torch.no_grad()
def reconstruction_errors(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Mean squared reconstruction error of each image (shape ``(N,)``), model in eval mode."""
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) tensor, got shape {tuple(images.shape)}")
    recon = model.reconstruct(images)  # type: ignore[operator]
    return ((recon.float() - images.float()) ** 2).flatten(1).mean(1).cpu().numpy()


def membership_attack(member_errors: np.ndarray, nonmember_errors: np.ndarray) -> dict[str, float]:
    """Threshold attack "low reconstruction error => the image was in the training set".

    Returns the gap of mean errors (non-members minus members), the ROC AUC
    of the score ``-error``, and the accuracy of the best threshold on a
    balanced set (members and non-members weighted equally; 0.5 = chance).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    m, n = np.asarray(member_errors, float).ravel(), np.asarray(nonmember_errors, float).ravel()
    if len(m) == 0 or len(n) == 0 or not (np.isfinite(m).all() and np.isfinite(n).all()):
        raise ValueError("need finite reconstruction errors for both members and non-members")
    labels = np.r_[np.ones(len(m)), np.zeros(len(n))]
    scores = -np.r_[m, n]
    fpr, tpr, _ = roc_curve(labels, scores)
    return {"gap": float(n.mean() - m.mean()), "ratio": float(n.mean() / max(m.mean(), 1e-12)),
            "auc": float(roc_auc_score(labels, scores)),
            "accuracy": float(np.max(0.5 * (tpr + 1 - fpr)))}
