"""`http_fetch`: GET a web page or API the tenant allows, never anything inside the network.

* GET only, `http`/`https` only, no credentials in the URL.
* The host must be on the calling tenant's allowlist (exact names, or `*.example.com` for subdomains);
  an empty allowlist allows nothing.
* Every address the host resolves to must be public: private, loopback, link-local, site-local,
  unique-local, CGNAT, multicast, reserved, unspecified and cloud metadata addresses (169.254.169.254,
  fd00:ec2::254, ...) are refused. An IPv6 address that embeds an IPv4 address is judged by the embedded
  one as well (see `blocked_reason`). The connection goes to the address that was checked (no second
  lookup a rebinding DNS server could answer differently).
* Redirects are followed by hand (at most `max_redirects`), each hop checked like the first.
* The body is read up to `max_bytes`; one deadline covers the whole fetch.

The resolver and the connector are injectable: tests point a public-looking name at a local server.
"""

from __future__ import annotations

import codecs
import fnmatch
import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from agentwire_tools.context import current_call
from agentwire_tools.registry import SideEffect, Tool, ToolError

#: (host, port) -> the IP addresses it resolves to.
Resolver = Callable[[str, int], list[str]]
#: (checked ip, port, timeout) -> a connected socket.
Connector = Callable[[str, int, float], socket.socket]

ALL_TENANTS = "*"
REDIRECTS = {301, 302, 303, 307, 308}
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml", "application/ld+json")
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
USER_AGENT = "agentwire-http-fetch/1"


class HttpFetchInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2048, description="The http(s) URL to GET.")


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ToolError(f"Could not resolve {host}: {exc.strerror}.") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def system_connector(ip: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((ip, port), timeout=timeout)


#: 64:ff9b::/96, the NAT64 well-known prefix (RFC 6052): the translator connects to the last 32 bits.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
#: Property names of `ipaddress` addresses that make an address unfit to fetch from, in the order reasons
#: are given. `site_local` (fec0::/10, deprecated) is spelled out because Python 3.11 calls it global.
_BLOCKED_KINDS = ("loopback", "link_local", "site_local", "unspecified", "multicast", "private", "reserved")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, each with the name of its form.

    A transition address can lead to the IPv4 host it names (a dual-stack socket, a NAT64 gateway, a
    6to4 or Teredo relay), so a filter that judged only the IPv6 address would let 2002:a9fe:a9fe::1
    reach 169.254.169.254.
    """
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if ip.ipv4_mapped is not None:
        found.append(("an IPv4-mapped address", ip.ipv4_mapped))
    if ip.sixtofour is not None:
        found.append(("a 6to4 address", ip.sixtofour))
    if ip.teredo is not None:
        server, client = ip.teredo
        found.extend((("a Teredo address", server), ("a Teredo address", client)))
    if ip in NAT64_WELL_KNOWN:
        found.append(("a NAT64 address", ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)))
    # IPv4-compatible ::a.b.c.d (deprecated, RFC 4291); `::` and `::1` are the unspecified and loopback
    # addresses, not compatible ones, and are judged as themselves.
    if int(ip) >> 32 == 0 and int(ip) > 1:
        found.append(("an IPv4-compatible address", ipaddress.IPv4Address(int(ip))))
    return found


#: Forms whose connection ends at the embedded IPv4 host itself: when that host is public, so is the
#: address (a public site behind DNS64/NAT64, or a 6to4 site). Teredo (a tunnel through a relay to a
#: client behind NAT, 2001::/23 is not globally reachable) and IPv4-compatible (deprecated, inside the
#: reserved ::/8) addresses are refused even when what they embed is public.
_TRANSLATED_FORMS = ("an IPv4-mapped address", "a 6to4 address", "a NAT64 address")


def blocked_reason(address: str) -> str | None:
    """Why an address must not be fetched from, or None when it is a public address.

    The one check of every address http_fetch would connect to: each DNS answer, of the first request
    and of every redirect hop (IP literals in URLs are resolved to themselves on the same path).
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv4Address):
        return _own_reason(ip)
    # Without its %zone (an interface name): the metadata set and the networks compare plain addresses.
    ip = ipaddress.IPv6Address(int(ip))
    embedded = embedded_ipv4(ip)
    for form, ipv4 in embedded:
        reason = _own_reason(ipv4)
        if reason is not None:
            return f"{reason} ({ipv4} inside {form})"
    if embedded and embedded[0][0] in _TRANSLATED_FORMS:
        # Judged by the public IPv4 host it leads to, not by `ipaddress`'s tables for its prefix, which
        # differ between Python releases (3.11.7 calls 64:ff9b::/96 reserved and 2002::/16 global).
        return None
    if embedded:
        return f"not a public address ({embedded[0][0]})"
    return _own_reason(ip)


def _own_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for kind in _BLOCKED_KINDS:
        if getattr(ip, f"is_{kind}", False):  # IPv4 addresses have no `is_site_local`
            return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind.replace('_', '-')} address"
    if not ip.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True)
class HttpFetchPolicy:
    #: tenant id (or `*` for every tenant) -> host patterns.
    allowlist: Mapping[str, Sequence[str]] = field(default_factory=dict)
    max_bytes: int = 200_000
    timeout_s: float = 10.0
    max_redirects: int = 3

    def allows(self, tenant_id: str, host: str) -> bool:
        patterns = [*self.allowlist.get(ALL_TENANTS, ()), *self.allowlist.get(tenant_id, ())]
        return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in patterns)


class HttpFetcher:
    def __init__(
        self,
        policy: HttpFetchPolicy,
        resolver: Resolver = system_resolver,
        connector: Connector = system_connector,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self.connector = connector
        self.clock = clock

    def fetch(self, url: str, tenant_id: str) -> dict[str, Any]:
        deadline = self.clock() + self.policy.timeout_s
        hops: list[str] = []
        for _ in range(self.policy.max_redirects + 1):
            response = self._get(url, tenant_id, deadline)
            status, headers, body, truncated = response
            location = headers.get("location")
            if status in REDIRECTS and location:
                hops.append(url)
                url = urljoin(url, location)
                continue
            content_type = headers.get("content-type", "")
            if content_type and not content_type.lower().startswith(TEXT_TYPES):
                raise ToolError(f"{url} returned {content_type}, which is not text; only text content is fetched.")
            return {
                "url": url,
                "status": status,
                "content_type": content_type,
                "redirected_from": hops,
                "truncated": truncated,
                "body": body.decode(_charset(content_type), errors="replace"),
            }
        raise ToolError(f"Too many redirects (more than {self.policy.max_redirects}).")

    def _check(self, url: str, tenant_id: str) -> tuple[str, str, int, str]:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ToolError(f"Only http and https URLs can be fetched, not {scheme or 'a relative URL'!r}.")
        if parts.username or parts.password:
            raise ToolError("URLs with credentials are not fetched.")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise ToolError(f"{url!r} has no host.")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise ToolError(f"{url!r} has an invalid port.") from None
        if not self.policy.allows(tenant_id, host):
            raise ToolError(f"{host} is not on this tenant's allowlist for http_fetch.")
        path = parts.path or "/"
        return scheme, host, port, path + (f"?{parts.query}" if parts.query else "")

    def _address(self, host: str, port: int) -> str:
        addresses = self.resolver(host, port)
        if not addresses:
            raise ToolError(f"{host} does not resolve to any address.")
        for address in addresses:
            reason = blocked_reason(address)
            if reason is not None:
                raise ToolError(f"{host} resolves to {reason}; fetching it is not allowed.")
        return addresses[0]

    def _get(self, url: str, tenant_id: str, deadline: float) -> tuple[int, dict[str, str], bytes, bool]:
        scheme, host, port, target = self._check(url, tenant_id)
        address = self._address(host, port)
        remaining = deadline - self.clock()
        if remaining <= 0:
            raise ToolError(f"Fetching took longer than {self.policy.timeout_s:g} s.")
        try:
            sock = self.connector(address, port, remaining)
            if scheme == "https":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            connection = _PreconnectedHTTP(host, port, sock, remaining)
            try:
                host_header = host if port in (80, 443) else f"{host}:{port}"
                connection.request(
                    "GET",
                    target,
                    headers={"Host": host_header, "User-Agent": USER_AGENT, "Accept": "text/*, application/json"},
                )
                response = connection.getresponse()
                body = bytearray()
                while len(body) <= self.policy.max_bytes:
                    if self.clock() > deadline:
                        raise ToolError(f"Fetching took longer than {self.policy.timeout_s:g} s.")
                    chunk = response.read(min(65_536, self.policy.max_bytes + 1 - len(body)))
                    if not chunk:
                        break
                    body.extend(chunk)
                truncated = len(body) > self.policy.max_bytes
                headers = {k.lower(): v for k, v in response.getheaders()}
                return response.status, headers, bytes(body[: self.policy.max_bytes]), truncated
            finally:
                connection.close()
        except TimeoutError:
            raise ToolError(f"Fetching {host} took longer than {self.policy.timeout_s:g} s.") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ToolError(f"Could not fetch {url}: {type(exc).__name__}: {exc}.") from None


class _PreconnectedHTTP(http.client.HTTPConnection):
    """An HTTP connection over a socket already connected to the checked address."""

    def __init__(self, host: str, port: int, sock: socket.socket, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        sock.settimeout(timeout)
        self.sock = sock

    def connect(self) -> None:  # never resolve the host name again
        if self.sock is None:
            raise OSError("connection already closed")


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            try:
                return codecs.lookup(value.strip('"')).name
            except LookupError:
                return "utf-8"
    return "utf-8"


def http_fetch_tool(fetcher: HttpFetcher) -> Tool[HttpFetchInput]:
    def run(call: HttpFetchInput) -> dict[str, Any]:
        return fetcher.fetch(call.url, current_call().tenant_id)

    return Tool(
        name="http_fetch",
        description=(
            "Fetch a web page or API response with an HTTP GET and return its status, content type and text "
            "body (capped). Only hosts on this tenant's allowlist can be fetched."
        ),
        input_model=HttpFetchInput,
        run=run,
        timeout_s=fetcher.policy.timeout_s + 2,
        max_output_chars=16_000,
        side_effect=SideEffect.READ_ONLY,
        untrusted_output=True,
    )
