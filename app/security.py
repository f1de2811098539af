"""Secrets: password hashing, tokens, API keys, credential encryption.

Libraries, not hand-rolled crypto: argon2-cffi (argon2id, the OWASP first choice), PyJWT for
access tokens, `cryptography`'s Fernet (AES-128-CBC + HMAC, with key rotation by MultiFernet) for
source credentials. Refresh tokens and API keys are random and high-entropy, so a plain SHA-256
stored hash is enough to find them and reveals nothing.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory defaults
_DUMMY_HASH = _hasher.hash("timing-equaliser")

API_KEY_PREFIX = "cgk_"
JWT_ALGORITHM = "HS256"


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
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return secret, secret[: len(API_KEY_PREFIX) + 8]


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
