from dataclasses import dataclass

from controlplane.audit.models import Source


@dataclass(frozen=True)
class Actor:
    """Who is acting, and from where. Passed explicitly to every service that changes state."""

    user: object | None
    source: str
    token_id: int | None = None
    token_scopes: tuple[str, ...] | None = None  # None: not acting through a token
    request_id: str = ""
    ip: str | None = None

    @property
    def name(self) -> str:
        if self.user is not None and getattr(self.user, "is_authenticated", False):
            return self.user.get_username()
        return self.source

    @classmethod
    def from_request(cls, request, source: str | None = None) -> "Actor":
        """API calls are ``api`` (or ``cli`` when the Switchyard CLI says so); pages are ``ui``."""
        token = getattr(request, "auth", None)
        if not hasattr(token, "scopes"):
            token = None
        if source is None:
            source = Source.CLI if request.headers.get("X-Switchyard-Client") == "cli" else Source.API
        return cls(
            user=request.user if request.user.is_authenticated else None,
            source=source,
            token_id=token.pk if token else None,
            token_scopes=tuple(token.scopes) if token else None,
            request_id=getattr(request, "request_id", ""),
            ip=request.META.get("REMOTE_ADDR"),
        )

    @classmethod
    def system(cls, source: str = Source.SYSTEM) -> "Actor":
        return cls(user=None, source=source)
