"""Encrypting what workflows store: ``EncryptedSerializer``.

Configure it as the ``serializer``::

    from dbos_async.encryption import EncryptedSerializer

    DBOS({"serializer": EncryptedSerializer(os.environ["DBOS_ENCRYPTION_KEY"])})

Every value the runtime stores (workflow inputs and outputs, step and transaction
outputs, recorded errors, events, messages, stream values, sleep wake-up times) is first
serialized by the inner serializer (the default JSON one, which keeps tuples, datetimes
and the rest as their types) and then encrypted with AES-GCM. Identifiers and names
(workflow IDs, function names, statuses, queue names, event keys, message topics, stream
keys, timestamps) stay plaintext: the runtime queries by them.

This module needs the ``cryptography`` package (``pip install 'dbos_async[encryption]'``);
it imports it only when an ``EncryptedSerializer`` is constructed.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._serialization import Serializer, make_serializer
from .errors import DBOSConfigError, DBOSSerializationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["DBOSDecryptionError", "EncryptedSerializer"]

PREFIX = "dbenc1:"
"""How every encrypted value begins: the format's name and version."""

_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_SIZES = (16, 24, 32)
_INSTALL_HINT = "pip install 'dbos_async[encryption]'"


class DBOSDecryptionError(DBOSSerializationError):
    """A stored value could not be decrypted: it was written with a key that is not
    configured (a wrong key, or a rotated one missing from ``old_keys``), it was altered
    in the database, or it is not encrypted at all."""


def _decode_key(key: object, name: str) -> bytes:
    """Raw key bytes: ``bytes`` are the key itself, a ``str`` is its base64 (either
    alphabet, padding optional)."""
    sizes = "16, 24 or 32 bytes (AES-128/192/256; 32 recommended)"
    if isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
        if len(raw) in _KEY_SIZES:
            return raw
        raise DBOSConfigError(
            f"EncryptedSerializer {name} must be {sizes}; got {len(raw)} bytes (bytes are "
            f"the raw key; a base64 key must be passed as str)"
        )
    if not isinstance(key, str):
        raise DBOSConfigError(
            f"EncryptedSerializer {name} must be bytes or base64 text (str), "
            f"got {type(key).__name__}"
        )
    text = key.strip()
    if not text:
        raise DBOSConfigError(
            f"EncryptedSerializer {name} is an empty string (is the environment variable "
            f"that should hold it set?); make one with EncryptedSerializer.generate_key()"
        )
    try:
        padded = text + "=" * (-len(text) % 4)
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise DBOSConfigError(
            f"EncryptedSerializer {name} is not valid base64 text (a str key must be the "
            f"base64 of {sizes}; pass raw bytes as bytes); make one with "
            f"EncryptedSerializer.generate_key()"
        ) from None
    if len(raw) not in _KEY_SIZES:
        raise DBOSConfigError(
            f"EncryptedSerializer {name} decodes from base64 to {len(raw)} bytes; it must be "
            f"{sizes}; make one with EncryptedSerializer.generate_key()"
        )
    return raw


def _aesgcm() -> type[AESGCM]:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise ImportError(
            f"EncryptedSerializer needs the 'cryptography' package: {_INSTALL_HINT}"
        ) from exc
    return AESGCM


class EncryptedSerializer:
    """A serializer that encrypts every stored value with AES-GCM.

    Args:
        key: the key that encrypts, and decrypts: 16, 24 or 32 bytes (32, AES-256, is
            recommended), as ``bytes`` or as base64 text (``generate_key()`` makes one).
        inner: the serializer whose text is encrypted: ``None`` or ``"json"`` for the
            library's JSON serializer (type-preserving; values come back as the annotated
            models and dataclasses), ``"pickle"``, or an object with
            ``serialize``/``deserialize``.
        old_keys: keys that only decrypt: the previous keys after a rotation, so that
            data written with them stays readable. New data is always written with ``key``.
        context: associated data bound into every value (for example the deployment's
            name): a value decrypts only under the same context, even with the right key.
        allow_plaintext: read stored values that are not encrypted (written before
            encryption was turned on) instead of raising ``DBOSDecryptionError``. New
            values are still encrypted. Meant for migrating an existing database; leave it
            off otherwise, since it lets whoever can write to the database inject
            unencrypted values.

    Each value is stored as ASCII text: ``"dbenc1:"`` followed by the URL-safe base64 of
    a random 96-bit nonce, the ciphertext and the 128-bit authentication tag. The
    associated data is the format name and version plus ``context``; it cannot bind the
    row a value belongs to (a serializer sees only the value), so someone who can write
    to the database can swap one encrypted value for another written with the same key,
    but can neither read nor alter one undetected.

    Raises:
        DBOSConfigError: a key is not 16/24/32 bytes or their base64.
        ImportError: ``cryptography`` is not installed.
    """

    def __init__(
        self,
        key: bytes | str,
        *,
        inner: object = None,
        old_keys: Iterable[bytes | str] = (),
        context: str | bytes = b"",
        allow_plaintext: bool = False,
    ) -> None:
        if isinstance(old_keys, (str, bytes, bytearray)):
            raise DBOSConfigError(
                "EncryptedSerializer old_keys must be a list of keys, not a single key"
            )
        keys = [_decode_key(key, "key")]
        keys += [_decode_key(k, f"old_keys[{i}]") for i, k in enumerate(old_keys)]
        if isinstance(context, str):
            context = context.encode()
        if not isinstance(context, bytes):
            raise DBOSConfigError(
                f"EncryptedSerializer context must be str or bytes, got {type(context).__name__}"
            )
        aesgcm = _aesgcm()
        self.inner: Serializer = make_serializer(inner)
        """The serializer whose text is encrypted."""
        self.allow_plaintext = bool(allow_plaintext)
        """Whether unencrypted stored values are read (see the class docstring)."""
        self._keys = keys
        self._context = context
        self._ciphers = [aesgcm(k) for k in keys]
        self._aad = b"dbos_async " + PREFIX.encode() + context

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled (by dbos_async.testing.crash_and_recover, for its child process) as the
        # arguments that rebuild it: the pickle holds the keys, so keep it as secret.
        return _rebuild, (self._keys, self.inner, self._context, self.allow_plaintext)

    def __repr__(self) -> str:
        return f"EncryptedSerializer(inner={self.inner!r}, keys={len(self._ciphers)})"

    @staticmethod
    def generate_key() -> str:
        """A new random 256-bit key as URL-safe base64 text, to keep in a secret store or
        an environment variable and pass as ``key``."""
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")

    def serialize(self, obj: Any) -> str:
        """Serialize ``obj`` with the inner serializer and encrypt the text."""
        return self.seal(self.inner.serialize(obj))

    def deserialize(self, data: str) -> Any:
        """Decrypt stored text and deserialize it with the inner serializer.

        Raises:
            DBOSDecryptionError: no configured key decrypts it, or it is not encrypted
                (and ``allow_plaintext`` is off).
        """
        return self.inner.deserialize(self.unseal(data))

    def seal(self, text: str) -> str:
        """Encrypt text (with ``key`` and a fresh random nonce) into the stored form."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._ciphers[0].encrypt(nonce, text.encode("utf-8"), self._aad)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def unseal(self, data: str) -> str:
        """Decrypt the stored form back into text, trying ``key`` and then each of
        ``old_keys``.

        Raises:
            DBOSDecryptionError: as for ``deserialize``.
        """
        if not data.startswith(PREFIX):
            if self.allow_plaintext:
                return data
            raise DBOSDecryptionError(
                f"a stored value is not encrypted (it does not begin with {PREFIX!r}): it "
                f"was written without EncryptedSerializer. To read a database written "
                f"before encryption was turned on, pass allow_plaintext=True"
            )
        try:
            blob = base64.urlsafe_b64decode(data[len(PREFIX) :].encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            blob = b""
        if len(blob) < _NONCE_BYTES + _TAG_BYTES:
            raise DBOSDecryptionError(
                "decryption of a stored value failed: its encrypted text is malformed "
                "(truncated or altered in the database)"
            )
        nonce, sealed = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
        from cryptography.exceptions import InvalidTag

        for cipher in self._ciphers:
            try:
                return cipher.decrypt(nonce, sealed, self._aad).decode("utf-8")
            except InvalidTag:
                continue
        tried = "the key" if len(self._ciphers) == 1 else f"{len(self._ciphers)} keys"
        raise DBOSDecryptionError(
            f"decryption of a stored value failed with {tried} configured: it was "
            f"written with another key, or under another context, or altered in the "
            f"database. Check the key (a wrong or rotated key: pass the key that wrote it, "
            f"or keep the previous key in old_keys=[...] after a rotation)"
        )


def _rebuild(
    keys: list[bytes], inner: Serializer, context: bytes, allow_plaintext: bool
) -> EncryptedSerializer:
    return EncryptedSerializer(
        keys[0], inner=inner, old_keys=keys[1:], context=context, allow_plaintext=allow_plaintext
    )
