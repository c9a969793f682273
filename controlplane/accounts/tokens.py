"""API token format: ``sy_<prefix>_<secret>``. The prefix is public; the secret is shown once."""
import hashlib
import hmac
import secrets

TOKEN_START = "sy_"


def generate() -> tuple[str, str, str]:
    """Return (full token, prefix, sha256 of the full token)."""
    prefix = secrets.token_hex(4)
    token = f"{TOKEN_START}{prefix}_{secrets.token_urlsafe(32)}"
    return token, prefix, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def split_prefix(token: str) -> str | None:
    if not token.startswith(TOKEN_START):
        return None
    prefix, sep, _ = token[len(TOKEN_START):].partition("_")
    return prefix if sep and prefix else None


def matches(token: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), secret_hash)
