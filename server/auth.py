"""Bearer tokens: generation, hashing, lookup and the bootstrap admin token."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sys
from pathlib import Path

from sqlmodel import Session, select

from farmhand.server.db import Database
from farmhand.server.errors import Conflict, NotFound, Unauthorized
from farmhand.server.tables import Token
from farmhand.wire import Role

TOKEN_PREFIX = "fh_"


def digest(token: str) -> str:
    """The stored form of a token. Tokens are 256-bit random, so a plain sha256 suffices."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(expected: str, given: str) -> bool:
    """Whether `given` is the secret `expected` (a lease token), compared in constant time.
    As UTF-8 bytes: `hmac.compare_digest` refuses non-ASCII text with a TypeError, and a
    JSON string may even hold a lone surrogate."""
    return hmac.compare_digest(
        expected.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass")
    )


def new_secret() -> str:
    """A fresh random token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    session: Session, *, role: Role, name: str = "", secret: str | None = None
) -> tuple[Token, str]:
    """Store a new token (or the given secret) and return the row and the secret."""
    secret = secret or new_secret()
    row = Token(role=role.value, name=name, digest=digest(secret))
    session.add(row)
    session.flush()
    return row, secret


def list_tokens(session: Session) -> list[Token]:
    """Every token, oldest first (revoked ones too: they stay for the record)."""
    return list(session.exec(select(Token).order_by(Token.id)))


def revoke(session: Session, token_id: int, *, caller_id: int) -> Token:
    """Revoke token `token_id` for good (again: no change). The caller's own token cannot be
    revoked with itself, so an admin never locks the last admin token out by accident."""
    row = session.get(Token, token_id)
    if row is None:
        raise NotFound(f"token {token_id} does not exist")
    if row.id == caller_id:
        raise Conflict(f"token {token_id} is the one this request uses; revoke it with another")
    row.revoked = True
    session.add(row)
    session.flush()
    return row


def require_secret(secret: str | None) -> str:
    """The secret, or `Unauthorized` for a request that carries no bearer token at all."""
    if not secret:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    return secret


def authenticate(session: Session, secret: str | None) -> Token:
    """The live token row for a bearer secret, or `Unauthorized`."""
    secret = require_secret(secret)
    row = session.exec(select(Token).where(Token.digest == digest(secret))).first()
    if row is None or row.revoked:
        raise Unauthorized("unknown or revoked token")
    return row


def bootstrap_admin(db: Database, data_dir: Path, configured: str | None) -> str | None:
    """Make sure an admin token exists; returns a newly generated secret (to print once).

    The token comes from `FARMHAND_ADMIN_TOKEN` (settings), else from `<data-dir>/admin.token`,
    else — on first start only — it is generated and written there with mode 0600.
    """
    path = data_dir / "admin.token"
    generated = None
    secret = configured
    if not secret and path.exists():
        secret = path.read_text().strip()
    with db.write() as session:
        if secret:
            if session.exec(select(Token).where(Token.digest == digest(secret))).first() is None:
                create_token(session, role=Role.admin, name="bootstrap", secret=secret)
            return None
        has_admin = session.exec(select(Token).where(Token.role == Role.admin.value)).first()
        if has_admin is not None:
            return None
        _, generated = create_token(session, role=Role.admin, name="bootstrap")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generated + "\n")
    print(f"farmhand: generated admin token (saved to {path}):\n  {generated}", file=sys.stderr)
    return generated
