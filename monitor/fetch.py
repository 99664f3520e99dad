"""Fetching feeds over HTTP: conditional GET, timeouts, size caps, bounded redirects.

One ``Fetcher`` holds one pooled ``httpx.AsyncClient`` for a whole run. Every fetch has
a total deadline (a server trickling bytes cannot hold it longer than ``timeout``) and
stops reading once the decoded body passes ``max_bytes`` (which also caps gzip bombs).
Everything that can go wrong becomes a ``FetchError`` for that feed alone.
"""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx

from monitor import __version__
from monitor.errors import FetchError, HTTPStatusError
from monitor.models import FetchResult

USER_AGENT = f"feed-monitor/{__version__} (RSS/Atom watchlist alerts; python-httpx)"
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_REDIRECTS = 5
_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)


class Fetcher:
    """Fetches feeds over one pooled HTTP client; use as an async context manager."""

    def __init__(
        self,
        *,
        user_agent: str = USER_AGENT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        max_connections: int = 32,
    ) -> None:
        self.max_bytes = max_bytes
        self._client = httpx.AsyncClient(
            follow_redirects=True,
            max_redirects=max_redirects,
            headers={"User-Agent": user_agent, "Accept": _ACCEPT},
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # Feeds are public documents: never send the user's netrc credentials.
            trust_env=False,
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(
        self,
        url: str,
        *,
        timeout: float,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> FetchResult:
        """GET ``url``, conditionally when validators from the last poll are given."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            async with asyncio.timeout(timeout):
                return await self._get(url, headers, timeout)
        except TimeoutError:
            raise FetchError(f"timed out after {timeout:g}s") from None
        except httpx.TimeoutException:
            raise FetchError(f"timed out after {timeout:g}s") from None
        except httpx.TooManyRedirects:
            raise FetchError("too many redirects (a redirect loop?)") from None
        except httpx.DecodingError as exc:
            raise FetchError(f"cannot decode the response: {exc}") from None
        except httpx.InvalidURL as exc:
            raise FetchError(f"invalid URL: {exc}") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"cannot connect: {exc or type(exc).__name__}") from None

    async def _get(self, url: str, headers: dict[str, str], timeout: float) -> FetchResult:
        request = self._client.build_request("GET", url, headers=headers, timeout=timeout)
        response = await self._client.send(request, stream=True)
        try:
            if response.status_code == 304:
                return self._result(response, b"")
            if response.status_code >= 400:
                reason = response.reason_phrase or ""
                raise HTTPStatusError(
                    response.status_code,
                    f"HTTP {response.status_code} {reason}".strip(),
                    retry_after=parse_retry_after(response.headers.get("retry-after")),
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise self._too_large()
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._too_large()
                chunks.append(chunk)
            return self._result(response, b"".join(chunks))
        finally:
            await response.aclose()

    def _too_large(self) -> FetchError:
        return FetchError(f"response larger than {self.max_bytes // 1024} KiB; stopped reading")

    @staticmethod
    def _result(response: httpx.Response, body: bytes) -> FetchResult:
        # Only a chain of permanent redirects moves a feed; a 302 may be temporary.
        moved = bool(response.history) and all(
            hop.status_code in (301, 308) for hop in response.history
        )
        return FetchResult(
            url=str(response.url),
            status=response.status_code,
            body=body,
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            content_type=response.headers.get("content-type"),
            moved_to=str(response.url) if moved else None,
            max_age=parse_max_age(response.headers.get("cache-control")),
        )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_max_age(value: str | None) -> float | None:
    """``max-age`` of a Cache-Control header, in seconds."""
    if not value:
        return None
    for directive in value.split(","):
        name, _, argument = directive.strip().partition("=")
        if name.lower() == "max-age" and argument.strip().strip('"').isdigit():
            return float(argument.strip().strip('"'))
    return None
