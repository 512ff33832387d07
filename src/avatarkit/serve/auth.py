"""Who may start a paid avatar session on a server others can reach.

The page sends ``start`` with the credential it was given (``#token=...`` in its address: the
fragment never reaches server logs or proxies); :class:`Auth` turns the socket and that
credential into an identity, or refuses. Four ways, one at a time:

- ``none``: anyone who can open the page (local use; the identity is the client's address);
- ``token``: a shared secret (``AVATARKIT_SERVE_TOKEN``), compared in constant time;
- ``link``: a signed, short-lived link (``AVATARKIT_SERVE_LINK_SECRET``): ``EXPIRY.SIGNATURE``,
  HMAC-SHA256 of the expiry; mint them with :func:`sign_link` or
  ``python -m avatarkit.serve.auth URL --ttl 600``;
- ``proxy``: an authenticating reverse proxy (oauth2-proxy, an ingress with auth) puts the user
  in a header (``--trusted-proxy-header X-Forwarded-User``); believed only from the proxy's
  addresses (``--trusted-proxy``, loopback by default).

Embedding apps pass ``authorize=`` to ``create_app``: a callable (plain or async) given the
socket's headers, client address and the page's credential, returning an identity (a non-empty
string) or ``None``; a hook that raises refuses.

Starts are rate-limited per identity (a token bucket each), so one user, or one address, cannot
start sessions in a loop; starts refused for want of a valid credential are counted per client
address the same way, so tokens and links cannot be guessed at speed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import inspect
import ipaddress
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from avatarkit.errors import AvatarKitError
from avatarkit.serve.ratelimit import TokenBucket

__all__ = [
    "LINK_SECRET_ENV",
    "TOKEN_ENV",
    "Auth",
    "AuthMode",
    "Authorizer",
    "Credentials",
    "StartLimiter",
    "sign_link",
    "verify_link",
]

logger = logging.getLogger(__name__)

TOKEN_ENV = "AVATARKIT_SERVE_TOKEN"
LINK_SECRET_ENV = "AVATARKIT_SERVE_LINK_SECRET"

AuthMode: TypeAlias = Literal["none", "token", "link", "proxy"]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a connection brings: its headers (lower-case names), the client's address (behind
    a trusted proxy: the address the proxy reports in ``X-Forwarded-For``), the address that
    connected (``peer``: the proxy, if any) and the credential the page sent with ``start``
    (``None`` when it sent none)."""

    headers: Mapping[str, str] = field(repr=False)  # cookies, the proxy's user header
    client: str | None
    credential: str | None = field(repr=False)
    peer: str | None = None


Authorizer: TypeAlias = Callable[[Credentials], str | Awaitable[str | None] | None]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signature(secret: bytes, expires: int) -> str:
    return _b64(hmac.new(secret, str(expires).encode(), hashlib.sha256).digest())


def sign_link(secret: bytes, ttl: float, *, now: float | None = None) -> str:
    """A credential valid for ``ttl`` seconds: put it in the page's address as ``#token=...``."""
    expires = int((time.time() if now is None else now) + ttl)
    return f"{expires}.{_signature(secret, expires)}"


def verify_link(secret: bytes, credential: str, *, now: float | None = None) -> bool:
    """True when ``credential`` was signed with ``secret`` and has not expired."""
    expires_text, _, signature = credential.partition(".")
    # isascii: str.isdigit() also accepts digits int() refuses ("²") or reads differently
    if not (expires_text.isascii() and expires_text.isdigit()) or not signature:
        return False
    if len(expires_text) > 12:
        return False
    expires = int(expires_text)
    if not hmac.compare_digest(signature, _signature(secret, expires)):
        return False
    return (time.time() if now is None else now) < expires


@dataclass
class Auth:
    """The server's rule for who may start a session (see the module docstring)."""

    mode: AuthMode = "none"
    token: str | None = field(default=None, repr=False)
    link_secret: bytes | None = field(default=None, repr=False)
    proxy_header: str | None = None
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    hook: Authorizer | None = None

    def __post_init__(self) -> None:
        if self.mode == "token" and not self.token:
            raise AvatarKitError(f"--auth token needs the token in ${TOKEN_ENV}")
        if self.mode == "link" and not self.link_secret:
            raise AvatarKitError(f"--auth link needs the signing secret in ${LINK_SECRET_ENV}")
        if self.mode == "proxy" and not self.proxy_header:
            raise AvatarKitError("--auth proxy needs --trusted-proxy-header NAME")
        try:
            self._networks = [ipaddress.ip_network(n, strict=False) for n in self.trusted_proxies]
        except ValueError as exc:
            raise AvatarKitError(f"--trusted-proxy: {exc}") from None

    @classmethod
    def from_env(
        cls,
        mode: AuthMode,
        *,
        proxy_header: str | None = None,
        trusted_proxies: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> Auth:
        """The rule for ``avatarkit serve --auth MODE``; secrets come from the environment,
        never from the command line (other users can read a process's arguments). Spaces and
        line ends around them are dropped: a secret made from a file (``kubectl create secret
        --from-file``, ``$(cat token)``) often ends with a newline no link carries."""
        env = os.environ if environ is None else environ
        token = env.get(TOKEN_ENV, "").strip()
        secret = env.get(LINK_SECRET_ENV, "").strip()
        return cls(
            mode=mode,
            token=(token or None) if mode == "token" else None,
            link_secret=secret.encode() if mode == "link" and secret else None,
            proxy_header=proxy_header,
            trusted_proxies=tuple(trusted_proxies) or ("127.0.0.1/32", "::1/128"),
        )

    def credentials(
        self, headers: Mapping[str, str], peer: str | None, credential: str | None
    ) -> Credentials:
        """What :meth:`identify` judges. The client is the peer, unless the peer is a trusted
        proxy that says (``X-Forwarded-For``) whom it forwards: then the nearest address in
        that list that is not itself a trusted proxy (the ones further left are the client's
        own claims, which anyone can forge)."""
        peer = _canonical(peer)
        client = peer
        forwarded = headers.get("x-forwarded-for")
        if forwarded and self._from_trusted_proxy(peer):
            hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
            for hop in reversed(hops):
                client = _canonical(hop)
                if not self._from_trusted_proxy(client):
                    break
        return Credentials(headers=headers, client=client, credential=credential, peer=peer)

    @property
    def needs_credential(self) -> bool:
        """Whether the page must send a credential with ``start``."""
        return self.mode in ("token", "link")

    async def authenticate(self, credentials: Credentials) -> str | None:
        """The identity starting a session, or ``None`` when it may not: :meth:`identify`, or
        the embedding app's ``hook`` (plain or async). A hook that fails or answers an empty
        identity refuses: only a non-empty string lets a paid session start."""
        if self.hook is None:
            return self.identify(credentials)
        try:
            answer: object = self.hook(credentials)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            # its type only: the message could quote the credential or a header
            logger.error("the authorize hook failed (%s): the start is refused", type(exc).__name__)
            return None
        if isinstance(answer, str) and answer:
            return answer
        if answer is not None and answer != "":
            logger.error(
                "the authorize hook answered %s, not an identity (a string) or None: the start "
                "is refused",
                type(answer).__name__,
            )
        return None

    def identify(self, credentials: Credentials) -> str | None:
        """The identity starting a session, or ``None`` when it may not (the built-in modes;
        with a ``hook``, use :meth:`authenticate`)."""
        if self.hook is not None:
            raise TypeError("an Auth with a hook is asked through authenticate()")
        credential = credentials.credential
        if self.mode == "none":
            return f"address:{credentials.client or 'unknown'}"
        if self.mode == "token":
            assert self.token is not None
            if credential is None or not hmac.compare_digest(
                credential.encode(), self.token.encode()
            ):
                return None
            return f"token:{credentials.client or 'unknown'}"
        if self.mode == "link":
            assert self.link_secret is not None
            if credential is None or not verify_link(self.link_secret, credential):
                return None
            return f"link:{credential.partition('.')[2][:16]}"
        # proxy
        assert self.proxy_header is not None
        if not self._from_trusted_proxy(credentials.peer):
            return None
        user = credentials.headers.get(self.proxy_header.lower(), "").strip()
        return f"user:{user}" if user else None

    def _from_trusted_proxy(self, client: str | None) -> bool:
        address = _address(client)
        return address is not None and any(address in network for network in self._networks)


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address in ``text``, as a peer or an ``X-Forwarded-For`` hop may write it: with
    a port (``203.0.113.7:51234``, ``[2001:db8::1]:443``, as some proxies add) or IPv4-mapped
    (``::ffff:10.0.0.5``, an IPv4 client of a dual-stack ``--host ::`` socket); else None."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:  # v4:port (a bare v6 address has two colons or more)
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _canonical(text: str | None) -> str | None:
    """``text`` as one spelling per address (ports dropped, IPv4-mapped as IPv4), so one client
    is one identity for the start limit; what is not an address stays as it is."""
    address = _address(text)
    return text if address is None else str(address)


class StartLimiter:
    """Session starts per identity: a token bucket each (``per_minute``, bursts of ``burst``),
    the least recently seen forgotten beyond ``max_clients``."""

    def __init__(self, per_minute: float = 10.0, burst: int = 5, max_clients: int = 10_000) -> None:
        if not (math.isfinite(per_minute) and per_minute > 0) or burst < 1:
            raise AvatarKitError(
                f"session starts per minute must be more than 0 (not {per_minute:g}) and "
                f"bursts at least 1 (not {burst})"
            )
        self.per_minute = per_minute
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, identity: str) -> bool:
        """Spend one start of ``identity``'s budget; False when it has none left."""
        return self._bucket(identity).take()

    def refused(self, client: str) -> None:
        """Count a start ``client`` made without a valid credential: guessing tokens or links
        costs from a budget like starting sessions does, at the same rate with twice the burst
        (a person with a wrong link retries a few times), see :meth:`locked_out`."""
        self._bucket(f"refused:{client}", burst=2 * self.burst).take()

    def locked_out(self, client: str) -> bool:
        """Whether ``client`` has spent its budget on refused starts: it gets no further try,
        with a valid credential or not, until the budget refills."""
        bucket = self._buckets.get(f"refused:{client}")
        return bucket is not None and not bucket.has()

    def _bucket(self, key: str, burst: int | None = None) -> TokenBucket:
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self.per_minute / 60.0, burst or self.burst)
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return bucket


def main(argv: list[str] | None = None) -> int:
    """Print a signed link: ``python -m avatarkit.serve.auth URL [--ttl SECONDS]``."""
    parser = argparse.ArgumentParser(
        prog="python -m avatarkit.serve.auth",
        description=f"print a signed, short-lived link to an avatarkit serve page "
        f"(the secret comes from ${LINK_SECRET_ENV})",
    )
    parser.add_argument("url", help="the page's address, e.g. https://avatar.example.com/")
    parser.add_argument("--ttl", type=float, default=600.0, help="seconds it stays valid (600)")
    args = parser.parse_args(argv)
    secret = os.environ.get(LINK_SECRET_ENV)
    if not secret:
        parser.error(f"set ${LINK_SECRET_ENV} to the server's signing secret")
    url = args.url.split("#", 1)[0]
    print(f"{url}#token={sign_link(secret.encode(), args.ttl)}")  # noqa: T201 (a CLI)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
