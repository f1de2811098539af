"""Secrets: password hashing, tokens, API keys, credential encryption.

Libraries, not hand-rolled crypto: argon2-cffi (argon2id, the OWASP first choice), PyJWT for
access tokens, `cryptography`'s Fernet (AES-128-CBC + HMAC, with key rotation by MultiFernet) for
source credentials. Refresh tokens and API keys are random and high-entropy, so a plain SHA-256
stored hash is enough to find them and reveals nothing.

API keys carry a checksum, as GitHub's tokens do (a recognisable prefix, a random part, the CRC32
of both in base62): a random or mistyped key is refused before anything is looked up, so
guessing at random costs the database nothing. The checksum is no secret; it only tells a key
this server could have issued from noise.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory defaults
_DUMMY_HASH = _hasher.hash("timing-equaliser")

API_KEY_PREFIX = "cgk_"
API_KEY_SHOWN = len(API_KEY_PREFIX) + 8  # the part of a key users see (`ApiKey.prefix`) to recognise it
JWT_ALGORITHM = "HS256"

_BASE62 = string.digits + string.ascii_letters
_KEY_RANDOM = 36  # base62 characters: 214 bits
_KEY_CHECKSUM = 6  # base62 characters hold a CRC32 (62**6 > 2**32)
_API_KEY = re.compile(rf"{API_KEY_PREFIX}[0-9A-Za-z]{{{_KEY_RANDOM + _KEY_CHECKSUM}}}")
# Keys issued before the checksum (token_urlsafe(32)): they keep working, checked by shape only.
_LEGACY_API_KEY = re.compile(rf"{API_KEY_PREFIX}[0-9A-Za-z_-]{{43}}")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user exists, so logins don't reveal accounts by timing."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """Returns (secret, prefix): the prefix is what users see to recognise a key later."""
    body = API_KEY_PREFIX + "".join(secrets.choice(_BASE62) for _ in range(_KEY_RANDOM))
    secret = body + _checksum(body)
    return secret, api_key_prefix(secret)


def api_key_prefix(secret: str) -> str:
    return secret[:API_KEY_SHOWN]


def well_formed_api_key(secret: str) -> bool:
    """Whether `secret` can be a key this server issued: its checksum holds (or it has the shape
    of a key issued before keys had one). Anything else is refused without a look-up."""
    if _API_KEY.fullmatch(secret):
        body, checksum = secret[:-_KEY_CHECKSUM], secret[-_KEY_CHECKSUM:]
        return _checksum(body) == checksum
    return _LEGACY_API_KEY.fullmatch(secret) is not None


def _checksum(body: str) -> str:
    value, digits = zlib.crc32(body.encode()), []
    for _ in range(_KEY_CHECKSUM):
        value, digit = divmod(value, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))


def issue_access_token(secret: str, user_id: uuid.UUID, ttl_seconds: int) -> tuple[str, datetime]:
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ttl_seconds)
    claims = {"sub": str(user_id), "iat": now, "exp": expires, "typ": "access"}
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM), expires


def read_access_token(secret: str, token: str) -> tuple[uuid.UUID, datetime] | None:
    """The user id of a valid, unexpired access token and when it expires; None for anything else."""
    try:
        claims = jwt.decode(token, secret, algorithms=[JWT_ALGORITHM], options={"require": ["exp", "sub"]})
        if claims.get("typ") != "access":
            return None
        return uuid.UUID(claims["sub"]), datetime.fromtimestamp(claims["exp"], UTC)
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
        return None


class Vault:
    """Encrypts source credentials at rest."""

    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def seal(self, value: Any) -> bytes:
        return self._fernet.encrypt(json.dumps(value).encode())

    def open(self, token: bytes) -> Any:
        try:
            return json.loads(self._fernet.decrypt(token))
        except InvalidToken as exc:
            raise ValueError("credentials cannot be decrypted with the configured key") from exc
