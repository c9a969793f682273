"""Failed sign-ins are counted per (username, IP) and per IP in the cache (Redis in production).

After LIMIT_PER_USER_IP failures for one name from one address, or LIMIT_PER_IP from one address
across names, sign-in from there is refused until the window passes.

The count is kept by the authentication backend (``ThrottledModelBackend``), so it covers every
sign-in form: the UI's and the Django admin's alike. The name is normalized the way Django's
login form normalizes it before authenticating (stripped, NFKC), then case-folded, so " dana",
"ＤＡＮＡ" and "dana" share one count.
"""
import hashlib

from django.contrib.auth.forms import UsernameField
from django.core.cache import cache

WINDOW_SECONDS = 15 * 60
LIMIT_PER_USER_IP = 5
LIMIT_PER_IP = 50


def normalize_username(username) -> str:
    """The name authentication will look up, case-folded. Mirrors AuthenticationForm's username field."""
    return (UsernameField().to_python(username if isinstance(username, str) else "") or "").casefold()


def _keys(username: str, ip: str) -> tuple[str, str]:
    who = hashlib.sha256(f"{normalize_username(username)}\0{ip}".encode()).hexdigest()[:32]
    return f"login-fail:user-ip:{who}", f"login-fail:ip:{ip}"


def is_blocked(username: str, ip: str) -> bool:
    user_key, ip_key = _keys(username, ip)
    return cache.get(user_key, 0) >= LIMIT_PER_USER_IP or cache.get(ip_key, 0) >= LIMIT_PER_IP


def record_failure(username: str, ip: str) -> None:
    for key in _keys(username, ip):
        if not cache.add(key, 1, WINDOW_SECONDS):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, WINDOW_SECONDS)


def reset(username: str, ip: str) -> None:
    cache.delete(_keys(username, ip)[0])
