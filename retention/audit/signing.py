"""Signed checkpoints: Ed25519 keys, the canonical form a checkpoint signs, and its check.

A `checkpoint` line is an audit line like any other (chained by DESIGN.md's rule)
with four keys of its own:

- `covers_seq`, `covers_hash`: the `seq` and `hash` of the line just before it, i.e.
  the chain up to the checkpoint;
- `key`: the signing key's fingerprint, SHA-256 (hex) of its 32 raw public bytes;
- `signature`: Ed25519 (base64) over the *signed form*: the line's canonical JSON
  without `seq`, `hash` and `signature`, i.e. exactly
  ``json.dumps(body, sort_keys=True, separators=(",", ":"))`` of `ts`, `run_id`,
  `event` ("checkpoint"), `covers_seq`, `covers_hash` and `key`.

Keys are PEM files `openssl` reads: the private key PKCS#8 (mode 0600, a key group
or others may read is refused), the public key SubjectPublicKeyInfo.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from retention.audit.events import Event
from retention.errors import UserError

PRIVATE_MODE: Final = 0o600
PUBLIC_MODE: Final = 0o644
_UNSIGNED: Final = frozenset({"seq", "hash", "signature"})


class SigningKeyError(UserError):
    """A key file is missing, unreadable, loose, or not an Ed25519 key (exit 2)."""


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the key's 32 raw bytes: what a checkpoint's `key` names."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def signed_form(line: Mapping[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers (see the module docstring)."""
    body = {k: v for k, v in line.items() if k not in _UNSIGNED}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def _read_key_file(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SigningKeyError("no such key file", where=where) from None
    except IsADirectoryError:
        raise SigningKeyError("is a directory, not a key file", where=where) from None
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else type(err).__name__
        raise SigningKeyError(f"cannot read the key file ({reason})", where=where) from None


@dataclass(frozen=True)
class Signer:
    """The run's private key. Its repr never shows the key."""

    path: Path
    private_key: Ed25519PrivateKey
    key_id: str

    def __repr__(self) -> str:
        return f"Signer(path={str(self.path)!r}, key_id={self.key_id!r})"

    def checkpoint(
        self, *, ts: str, run_id: str, covers_seq: int, covers_hash: str
    ) -> dict[str, Any]:
        """A checkpoint record over the chain up to (`covers_seq`, `covers_hash`), signed."""
        record: dict[str, Any] = {
            "ts": ts,
            "run_id": run_id,
            "event": Event.CHECKPOINT.value,
            "covers_seq": covers_seq,
            "covers_hash": covers_hash,
            "key": self.key_id,
        }
        signature = self.private_key.sign(signed_form(record))
        record["signature"] = base64.b64encode(signature).decode("ascii")
        return record


def load_signer(path: Path, *, where: str = "--signing-key") -> Signer:
    """Read a private key; refuse one that group or others may read (exit 2)."""
    label = f"{where} {path}"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SigningKeyError("no such key file", where=label) from None
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else type(err).__name__
        raise SigningKeyError(f"cannot read the key file ({reason})", where=label) from None
    if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
        # Tightening now would not undo a read that already happened: refuse, as ssh does.
        raise SigningKeyError(
            f"group or others may read this private key (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run `chmod 600 {path}`, and make a new key if others could have copied it",
            where=label,
        )
    data = _read_key_file(path, label)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(
            "not an unencrypted PEM private key (make one with `retention audit keygen`)",
            where=label,
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError("not an Ed25519 key", where=label)
    return Signer(path, key, fingerprint(key.public_key()))


@dataclass(frozen=True)
class PublicKey:
    path: Path
    key: Ed25519PublicKey
    key_id: str


def load_public_keys(paths: Iterable[Path]) -> dict[str, PublicKey]:
    """The keys `audit verify --public-key` trusts, by fingerprint."""
    ring: dict[str, PublicKey] = {}
    for path in paths:
        label = f"--public-key {path}"
        data = _read_key_file(path, label)
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            raise SigningKeyError("not a PEM public key", where=label) from None
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError("not an Ed25519 public key", where=label)
        key_id = fingerprint(key)
        ring.setdefault(key_id, PublicKey(path, key, key_id))
    return ring


def check_signature(line: Mapping[str, Any], key: Ed25519PublicKey) -> bool:
    """Whether the checkpoint line's signature is the key's, over its signed form."""
    encoded = line.get("signature")
    if not isinstance(encoded, str):
        return False
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(signature, signed_form(line))
    except InvalidSignature:
        return False
    return True


def _write_new(path: Path, data: bytes, mode: int, flag: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise SigningKeyError(
            "already exists; a key is never overwritten (pick another name)",
            where=f"{flag} {path}",
        ) from None
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else type(err).__name__
        raise SigningKeyError(
            f"cannot create the key file ({reason})", where=f"{flag} {path}"
        ) from None
    try:
        os.fchmod(fd, mode)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def public_path(private: Path) -> Path:
    return private.with_name(private.name + ".pub")


def keygen(private: Path) -> tuple[Path, str]:
    """Write a new key pair: `private` (0600) and `private`.pub; never overwrite."""
    pub = public_path(private)
    for path in (private, pub):
        if os.path.lexists(path):
            raise SigningKeyError(
                "already exists; a key is never overwritten (pick another name)",
                where=f"keygen {path}",
            )
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private, pem, PRIVATE_MODE, "keygen")
    _write_new(pub, public, PUBLIC_MODE, "keygen")
    return pub, fingerprint(key.public_key())
