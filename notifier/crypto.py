"""Personal data at rest: sealed with AES-GCM under a key derived from NOTIFIER_SECRET_KEY."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

SEALED = "e1:"  # the scheme and key generation of a sealed value, as text (base64)
SEALED_RAW = b"e2"  # the same, as bytes: nonce and ciphertext as they are (no base64)
PLAIN = "p:"  # no key configured (a trial): stored as it is, and `check` says so
NO_KEY = "sealed with a key this process does not have (NOTIFIER_SECRET_KEY)"


class Sealer:
    """Seals and opens short texts (addresses, names). Without a key it stores them plain."""

    def __init__(self, secret: SecretStr | None, previous: SecretStr | None = None) -> None:
        self._aead = _aead(secret) if secret is not None else None
        # during a key rotation: what the old key sealed still opens (see `notifier rotate-key`)
        self._previous = _aead(previous) if previous is not None else None

    def seal(self, text: str) -> str:
        if self._aead is None:
            return PLAIN + text
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, text.encode(), None)
        return SEALED + base64.b64encode(nonce + sealed).decode()

    def seal_bytes(self, text: str) -> bytes:
        """``seal``, as bytes for a store that takes them (the contacts hash): nonce and
        ciphertext as they are, with no base64 to undo on each open."""
        if self._aead is None:
            return (PLAIN + text).encode()
        nonce = os.urandom(12)
        return SEALED_RAW + nonce + self._aead.encrypt(nonce, text.encode(), None)

    def open(self, stored: str) -> str:
        if stored.startswith(PLAIN):
            return stored[len(PLAIN) :]
        if not stored.startswith(SEALED):
            raise ValueError(NO_KEY)
        return self._decrypt(base64.b64decode(stored[len(SEALED) :]))

    def _decrypt(self, raw: bytes) -> str:
        if self._aead is None:
            raise ValueError(NO_KEY)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], None).decode()
        except InvalidTag:
            if self._previous is not None:
                try:
                    return self._previous.decrypt(raw[:12], raw[12:], None).decode()
                except InvalidTag:
                    pass
            raise ValueError("sealed with another NOTIFIER_SECRET_KEY") from None

    def open_many(self, stored: list[bytes]) -> list[str]:
        """``open`` for a batch's worth of values as Redis returns them (bytes), sealed by
        ``seal_bytes`` or ``seal``: the worker opens 500 a batch, so each value costs its
        decryption and little more."""
        aead = self._aead
        if aead is None or not all(value.startswith(SEALED_RAW) for value in stored):
            return [self.open_value(value) for value in stored]  # older, plain or odd ones
        decrypt = aead.decrypt
        try:
            return [decrypt(value[2:14], value[14:], None).decode() for value in stored]
        except InvalidTag:  # some sealed with the previous key, during a rotation
            return [self._decrypt(value[2:]) for value in stored]

    def open_value(self, value: bytes) -> str:
        """``open`` for a value as Redis returns it: sealed as bytes or as text."""
        if value.startswith(SEALED_RAW):
            return self._decrypt(value[2:])
        sealed = SEALED.encode()
        if self._aead is not None and value.startswith(sealed):
            return self._decrypt(binascii.a2b_base64(value[len(sealed) :]))
        return self.open(value.decode())


def _aead(secret: SecretStr) -> AESGCM:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"notifier", info=b"personal-data"
    ).derive(secret.get_secret_value().encode())
    return AESGCM(key)
