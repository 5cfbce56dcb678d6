"""Who may call the server: one filter in front of every route (a Starlette middleware).

- A web page: a browser says which page sends a request (`Origin`). Only loopback pages and the
  `--allow-origin` ones are answered (403 otherwise), so that a page on the web cannot make the
  browser post to this server (CSRF); those get CORS headers, so that they can read the answers.
- A name: bound to loopback, the `Host` must name loopback (an IP, `localhost`) or be an
  `--allow-host` name (403 otherwise), so that a web name that resolves to 127.0.0.1 (DNS
  rebinding) does not reach the server as a page of its own. Bound elsewhere (which needs
  --api-key) any name is fine.
- A body: a POST says `Content-Type: application/json` (415 otherwise). The types a page may post
  without asking first (text/plain, forms) are refused, whatever the Origin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response

from ..errors import ExitCode, QwenlocalError
from .main import loopback
from .openai import ApiError
from .protocol import error_response


def hostname(authority: str) -> str:
    """The host of a Host header, lower case, without its port or an IPv6 address's brackets."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    return authority.partition(":")[0]


def _origin(value: str) -> str:
    """An --allow-origin value as browsers write an Origin: scheme://host[:port], lower case."""
    value = value.strip().lower().rstrip("/")
    parts = urlsplit(value)
    if value != "*" and not (parts.scheme and parts.netloc and not parts.path and not parts.query):
        raise QwenlocalError(
            f"invalid --allow-origin {value!r}: an origin is scheme://host[:port]",
            hint="e.g. --allow-origin http://localhost:3000, or '*' for any page",
            code=ExitCode.USAGE,
        )
    return value


def _host(value: str) -> str:
    name = hostname(value)
    if not name or "/" in value:
        raise QwenlocalError(
            f"invalid --allow-host {value!r}: a host name or address, without a scheme",
            hint="e.g. --allow-host my-machine.local",
            code=ExitCode.USAGE,
        )
    return name


def _each(values: Iterable[str]) -> list[str]:
    """Repeated flags, and comma-separated lists (QWENLOCAL_ALLOW_ORIGIN=a,b), as one list."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@dataclass(frozen=True)
class Access:
    origins: frozenset[str] = frozenset()  # --allow-origin, besides loopback pages; "*": any
    hosts: frozenset[str] | None = frozenset()  # --allow-host, besides loopback; None: any

    @classmethod
    def of(cls, bound: str, origins: Iterable[str] = (), hosts: Iterable[str] = ()) -> Access:
        """The rules of a server bound to `bound`; a usage error for a value that is not one."""
        allowed = frozenset(_origin(o) for o in _each(origins))
        own = hostname(f"[{bound}]" if ":" in bound else bound)  # --host's own name
        names = frozenset(_host(h) for h in _each(hosts)) | {own}
        return cls(allowed, names if loopback(bound) else None)

    def origin_allowed(self, origin: str) -> bool:
        if "*" in self.origins:
            return True
        parts = urlsplit(origin.strip().lower())
        try:
            name = parts.hostname
            parts.port  # noqa: B018 (a bad port is a ValueError: not an origin)
        except ValueError:
            return False
        if parts.scheme in ("http", "https") and name and loopback(name):
            return True
        return origin.strip().lower() in self.origins

    def host_allowed(self, host: str | None) -> bool:
        if self.hosts is None or host is None:  # no Host at all: HTTP/1.0, not a browser
            return True
        name = hostname(host)
        return loopback(name) or name in self.hosts

    def refusal(self, method: str, headers: Headers) -> ApiError | None:
        """Why this request is not answered (403, 415), or None."""
        host, origin = headers.get("host"), headers.get("origin")
        if not self.host_allowed(host):
            return ApiError(
                403,
                f"the Host {host} is not a name of this server (a guard against DNS rebinding): "
                f"start the server with --allow-host {hostname(host)} to use it",
                code="host_not_allowed",
            )
        if origin is not None and not self.origin_allowed(origin):
            return ApiError(
                403,
                f"requests from the web page at {origin} are refused (a guard against cross-site "
                f"requests): start the server with --allow-origin {origin} to allow them",
                code="origin_not_allowed",
            )
        kind = headers.get("content-type")
        if method == "POST" and (kind or "").partition(";")[0].strip().lower() != "application/json":
            return ApiError(
                415,
                f"the body must be JSON, sent with Content-Type: application/json (not {kind or 'none'})",
                code="unsupported_media_type",
            )
        return None


class Guard:
    """The filter: a refused request is answered in OpenAI's error shape before any route sees it;
    an allowed page's requests (and its CORS preflights) get CORS headers."""

    def __init__(self, app, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        refusal = self.access.refusal(scope["method"], headers)
        if refusal is not None:
            return await error_response(refusal)(scope, receive, send)
        origin = headers.get("origin")
        if origin is None:
            return await self.app(scope, receive, send)
        cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            cors |= {
                "Access-Control-Allow-Methods": "GET, POST",
                "Access-Control-Allow-Headers": headers.get("access-control-request-headers", ""),
                "Access-Control-Max-Age": "600",
            }
            if headers.get("access-control-request-private-network") == "true":  # Chrome's, for loopback
                cors["Access-Control-Allow-Private-Network"] = "true"
            return await Response(status_code=204, headers=cors)(scope, receive, send)

        async def send_with_cors(message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(cors)
            await send(message)

        await self.app(scope, receive, send_with_cors)
