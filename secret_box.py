"""Secrets at rest: the Lamassu password, SSH private keys, webhook secrets.

They are sealed with AES-256-GCM (pycryptodomex, which LNbits installs) under
a key derived from LNbits' own secret (``settings.auth_secret_key``, kept in
the data folder's ``.lnbits_auth_key`` or in the environment), so a copy of
the database alone does not reveal them. A sealed value is text:
``sbx1:`` + base64(nonce 12 | tag 16 | ciphertext).

``open_secret`` also reads a value stored in plain text before secrets were
sealed (no prefix), so a row written by an older version still works until
the migration that seals it has run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from Cryptodome.Cipher import AES
from Cryptodome.Random import get_random_bytes

PREFIX = "sbx1:"
_CONTEXT = b"satmachineadmin/secret-box/v1"


class SecretUnreadableError(Exception):
    """A sealed value that this LNbits' secret cannot open (tampered, or
    sealed under another LNbits' secret). Never carries the value."""


def _key(secret: str | None = None) -> bytes:
    if secret is None:
        from lnbits.settings import settings

        secret = settings.auth_secret_key
    if not secret:
        raise RuntimeError("LNbits has no auth_secret_key to derive a key from")
    # HMAC-SHA256 as a one-step KDF: a fixed context under LNbits' secret.
    return hmac.new(secret.encode(), _CONTEXT, hashlib.sha256).digest()


def is_sealed(value: str | None) -> bool:
    return bool(value) and str(value).startswith(PREFIX)


def seal(value: str | None, *, secret: str | None = None) -> str | None:
    """The sealed form of ``value``; None and "" stay as they are, and a
    value already sealed is returned unchanged."""
    if value is None or value == "" or is_sealed(value):
        return value
    nonce = get_random_bytes(12)
    cipher = AES.new(_key(secret), AES.MODE_GCM, nonce=nonce)
    ciphertext, tag = cipher.encrypt_and_digest(value.encode())
    return PREFIX + base64.b64encode(nonce + tag + ciphertext).decode()


def open_secret(value: str | None, *, secret: str | None = None) -> str | None:
    """The plain value of a sealed one; a legacy plain value is returned as
    it is. Raises SecretUnreadableError when the seal does not open."""
    if value is None or value == "" or not is_sealed(value):
        return value
    try:
        raw = base64.b64decode(value[len(PREFIX) :], validate=True)
        nonce, tag, ciphertext = raw[:12], raw[12:28], raw[28:]
        cipher = AES.new(_key(secret), AES.MODE_GCM, nonce=nonce)
        return cipher.decrypt_and_verify(ciphertext, tag).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise SecretUnreadableError(
            "a stored secret could not be opened with this LNbits' key"
        ) from exc
