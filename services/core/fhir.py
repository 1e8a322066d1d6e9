"""FHIR R4 REST client for any EHR (the sandbox, Epic, HAPI, ...), with SMART Backend Services.

One ``FhirClient`` per tenant EHR, each with its own HTTP connection pool (``FhirClients``
keeps them by tenant). Authentication is SMART Backend Services: a JWT assertion signed with
the tenant's private key (RS384 or ES384) is exchanged for an access token, which is cached
until shortly before it expires. ``start()`` reads the CapabilityStatement.

HTTP errors become ``services.core.errors`` exceptions via ``from_http_status`` (429/5xx are
retryable and carry Retry-After); the OperationOutcome is kept on ``exc.outcome`` and only
its issue codes go into the message (diagnostics may echo clinical content).
This client does not retry: callers own retry policy.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator
from urllib.parse import urljoin

import httpx
import jwt

from services.core.errors import FatalError, RetryableError, VigilError, classify, from_http_status
from services.core import httpclient, jsoncodec
from services.core.httpclient import async_client
from services.core.tenantcache import TenantCache

DEFAULT_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 20
#: Assertions live 4 minutes (SMART allows at most 5).
ASSERTION_LIFETIME_S = 240
#: Refresh a cached access token this long before it expires, so a request never carries a
#: token that expires in flight (30 s margin on a typical 300 s token).
TOKEN_REFRESH_MARGIN_S = 30
#: Safety bound on next-link following: 1000 pages x _count (e.g. 100) = 100k resources.
MAX_PAGES = 1000
#: A pooled keep-alive connection the server closed while it sat idle fails the next request before
#: any response arrives. Reads, and the token grant, are safe to send once more at once.
STALE_CONNECTION_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError)
SAFE_TO_RESEND = ("GET", "HEAD")
FHIR_JSON = "application/fhir+json"
#: Type- and system-level request URLs a client keeps parsed (``FhirClient._target``).
URL_CACHE_SIZE = 64
ALGORITHMS = ("RS384", "ES384")


def key_algorithm(pem: str) -> str:
    """The SMART signing algorithm a private key (PEM) is for: ``RS384`` (RSA) or ``ES384`` (EC P-384).

    Raises ``ValueError`` (no key material in the message) for anything else."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ValueError("not an unencrypted PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        return "ES384"
    raise ValueError(f"a {type(key).__name__.removeprefix('_')} key: SMART clients sign with RSA (RS384) "
                     "or EC P-384 (ES384)")


@dataclass(frozen=True)
class SmartCredentials:
    client_id: str
    private_key_pem: str = field(repr=False)
    alg: str = "RS384"
    kid: str | None = None
    scope: str = "system/*.rs"
    token_url: str | None = None  # None: discovered from <base>/.well-known/smart-configuration

    def __post_init__(self) -> None:
        if self.alg not in ALGORITHMS:
            raise ValueError(f"alg must be one of {ALGORITHMS}")


@dataclass(frozen=True)
class WriteResult:
    status: int
    resource: dict | None
    location: str | None
    etag: str | None

    @property
    def created(self) -> bool:
        return self.status == 201

    @property
    def id(self) -> str | None:
        if self.resource and self.resource.get("id"):
            return self.resource["id"]
        parts = (self.location or "").split("/_history/")[0].rstrip("/").split("/")
        return parts[-1] if self.location else None

    @property
    def version(self) -> int | None:
        tag = (self.etag or "").replace("W/", "").strip('"')
        if tag.isdigit():
            return int(tag)
        if self.location and "/_history/" in self.location:
            return int(self.location.rsplit("/", 1)[-1])
        return None


def new_client_key(alg: str = "RS384", kid: str | None = None) -> tuple[str, dict]:
    """A fresh key pair for a SMART client: (private key PEM, public JWK with kid and alg)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    kid = kid or uuid.uuid4().hex[:16]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS384" \
        else ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    algo = jwt.algorithms.RSAAlgorithm if alg == "RS384" else jwt.algorithms.ECAlgorithm
    public = json.loads(algo.to_jwk(key.public_key()))
    public.update(kid=kid, alg=alg, use="sig")
    return pem, public


def _error(response: httpx.Response) -> VigilError:
    outcome = None
    codes = ""
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
            outcome = body
            codes = ",".join(str(i.get("code")) for i in body.get("issue", []) if isinstance(i, dict))
        elif isinstance(body, dict) and "error" in body:
            codes = str(body["error"])[:60]
    except ValueError:
        pass
    message = f"HTTP {response.status_code} from {response.request.method} {response.request.url.path}"
    exc = from_http_status(response.status_code, message + (f" ({codes})" if codes else ""),
                           response.headers.get("retry-after"))
    exc.status = response.status_code  # type: ignore[attr-defined]
    exc.outcome = outcome  # type: ignore[attr-defined]
    return exc


class FhirClient:
    def __init__(self, base_url: str, *, credentials: SmartCredentials | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.capabilities: dict | None = None
        self._transport = transport if transport is not None else httpclient.transport(
            limits=httpx.Limits(max_connections=max_connections))
        self._http = async_client(timeout=timeout, transport=self._transport, headers={"Accept": FHIR_JSON})
        self._extensions = {"timeout": self._http.timeout.as_dict()}
        self._token: str | None = None
        self.granted_scope: str | None = None  # known after the first token request
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self._token_url = credentials.token_url if credentials else None
        self._urls: dict[str, httpx.URL] = {}

    async def __aenter__(self) -> "FhirClient":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def start(self) -> dict:
        """Read the CapabilityStatement (and the SMART configuration when authenticating)."""
        self.capabilities = await self._json("GET", "metadata", auth=False)
        if self.credentials and not self._token_url:
            config = await self._json("GET", ".well-known/smart-configuration", auth=False)
            self._token_url = config["token_endpoint"]
        return self.capabilities

    async def close(self) -> None:
        await self._http.aclose()

    # --- authentication ---------------------------------------------------------------

    def _assertion(self) -> str:
        creds = self.credentials
        now = int(time.time())
        claims = {"iss": creds.client_id, "sub": creds.client_id, "aud": self._token_url, "iat": now,
                  "exp": now + ASSERTION_LIFETIME_S, "jti": uuid.uuid4().hex}
        headers = {"kid": creds.kid} if creds.kid else None
        return jwt.encode(claims, creds.private_key_pem, algorithm=creds.alg, headers=headers)

    async def access_token(self, *, force: bool = False) -> str:
        async with self._token_lock:
            if not force and self._token and time.time() < self._token_expires - TOKEN_REFRESH_MARGIN_S:
                return self._token
            if not self._token_url:
                config = await self._json("GET", ".well-known/smart-configuration", auth=False)
                self._token_url = config["token_endpoint"]
            form = {"grant_type": "client_credentials", "scope": self.credentials.scope,
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": self._assertion()}
            try:
                response = await self._send("POST", self._token_url, True, data=form,
                                            headers={"Accept": "application/json"})
            except httpx.HTTPError as exc:
                raise classify(exc) from None
            if response.status_code != 200:
                raise _error(response)
            body = response.json()
            self._token = body["access_token"]
            self._token_expires = time.time() + float(body.get("expires_in", 300))
            self.granted_scope = body.get("scope", "")
            return self._token

    # --- transport --------------------------------------------------------------------

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}/{path.lstrip('/')}"

    def _target(self, path: str) -> str | httpx.URL:
        """The request URL; a type- or system-level one (``""`` for Bundles, ``Task``, ``metadata``)
        parsed once per client (httpx parses a string URL on every request)."""
        url = self._urls.get(path)
        if url is None:
            url = self.url(path)
            if "/" not in path and "?" not in path and len(self._urls) < URL_CACHE_SIZE:
                url = self._urls[path] = httpx.URL(url)
        return url

    async def _send(self, method: str, url: str | httpx.URL, resend: bool, **kwargs) -> httpx.Response:
        """One request; a read (or the token grant) that meets a keep-alive connection the server
        closed while it sat idle in the pool is sent once more, on a fresh connection. The token
        grant (a form) goes through the httpx client; every FHIR interaction is ``_exchange``."""
        send = self._http.request if "data" in kwargs else self._exchange
        try:
            return await send(method, url, **kwargs)
        except STALE_CONNECTION_ERRORS:
            if not resend:
                raise
        return await send(method, url, **kwargs)

    async def _exchange(self, method: str, url: str | httpx.URL, *, content: bytes | None = None, params: Any = None,
                        headers: dict[str, str] | None = None) -> httpx.Response:
        """One request handed straight to the transport and read whole: httpx's ``Request`` and
        ``Response`` (URL, query, header and body handling, content decoding), the client's default
        headers and timeouts, without the client's per-request layers this client does not use
        (auth and redirect flows, event hooks, cookies): about a third of the CPU of a request."""
        merged = self._http.headers.copy()
        if headers:
            merged.update(headers)
        request = httpx.Request(method, url, params=params, headers=merged, content=content,
                                extensions=self._extensions)
        response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response

    async def request(self, method: str, path: str, *, json_body: Any = None, params: Any = None,
                      headers: dict[str, str] | None = None, auth: bool = True) -> httpx.Response:
        headers = dict(headers or {})
        content = None
        if json_body is not None:
            content = jsoncodec.dumps(json_body)
            headers["Content-Type"] = FHIR_JSON
        for attempt in (1, 2):
            if auth and self.credentials:
                headers["Authorization"] = f"Bearer {await self.access_token(force=attempt == 2)}"
            try:
                response = await self._send(method, self._target(path), method in SAFE_TO_RESEND, content=content,
                                            params=params, headers=headers)
            except httpx.HTTPError as exc:
                raise classify(exc) from None
            # One retry with a fresh token when the cached one was refused (e.g. server restarted).
            if response.status_code == 401 and auth and self.credentials and attempt == 1:
                continue
            break
        if response.status_code >= 400:
            raise _error(response)
        return response

    @asynccontextmanager
    async def stream(self, path: str, *, headers: dict[str, str] | None = None,
                     auth: bool = True) -> AsyncIterator[httpx.Response]:
        """A GET whose body is read as it arrives (``response.aiter_bytes()``), for large files such as
        Bulk Data output. Errors (>= 400) raise like ``request``; a refused cached token is renewed once."""
        headers = dict(headers or {})
        for attempt in (1, 2):
            if auth and self.credentials:
                headers["Authorization"] = f"Bearer {await self.access_token(force=attempt == 2)}"
            try:
                async with self._http.stream("GET", self.url(path), headers=headers) as response:
                    if response.status_code == 401 and auth and self.credentials and attempt == 1:
                        continue
                    if response.status_code >= 400:
                        await response.aread()
                        raise _error(response)
                    yield response
                    return
            except httpx.HTTPError as exc:
                raise classify(exc) from None

    async def _json(self, method: str, path: str, **kwargs) -> dict:
        response = await self.request(method, path, **kwargs)
        try:
            return jsoncodec.loads(response.content)
        except ValueError:
            raise FatalError(f"{method} {path}: response is not JSON", code="bad_response") from None

    @staticmethod
    def _write_result(response: httpx.Response) -> WriteResult:
        body = jsoncodec.loads(response.content) if response.content else None
        return WriteResult(response.status_code, body if isinstance(body, dict) else None,
                           response.headers.get("location"), response.headers.get("etag"))

    # --- interactions -----------------------------------------------------------------

    async def read(self, rtype: str, rid: str) -> dict:
        return await self._json("GET", f"{rtype}/{rid}")

    async def vread(self, rtype: str, rid: str, version: int | str) -> dict:
        return await self._json("GET", f"{rtype}/{rid}/_history/{version}")

    async def search_page(self, rtype: str, params: Any = None) -> dict:
        return await self._json("GET", rtype, params=params)

    async def iter_search(self, rtype: str, params: Any = None, *, max_pages: int = MAX_PAGES) -> AsyncIterator[dict]:
        bundle = await self.search_page(rtype, params)
        for _ in range(max_pages):
            for entry in bundle.get("entry", []):
                if entry.get("search", {}).get("mode", "match") == "match" and "resource" in entry:
                    yield entry["resource"]
            nxt = next((link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"), None)
            if not nxt:
                return
            bundle = await self._json("GET", urljoin(self.base_url + "/", nxt))
        raise FatalError(f"search of {rtype} exceeded {max_pages} pages", code="too_many_pages")

    async def search(self, rtype: str, params: Any = None, *, max_pages: int = MAX_PAGES) -> list[dict]:
        """All matching resources, following next links."""
        return [r async for r in self.iter_search(rtype, params, max_pages=max_pages)]

    async def create(self, resource: dict, *, if_none_exist: str | None = None,
                     prefer: str = "representation") -> WriteResult:
        headers = {"Prefer": f"return={prefer}"}
        if if_none_exist:
            headers["If-None-Exist"] = if_none_exist
        return self._write_result(await self.request("POST", resource["resourceType"], json_body=resource,
                                                     headers=headers))

    async def update(self, resource: dict, *, if_match: int | str | None = None,
                     prefer: str = "representation") -> WriteResult:
        headers = {"Prefer": f"return={prefer}"}
        if if_match is not None:
            headers["If-Match"] = if_match if isinstance(if_match, str) and if_match.startswith("W/") \
                else f'W/"{if_match}"'
        path = f"{resource['resourceType']}/{resource['id']}"
        return self._write_result(await self.request("PUT", path, json_body=resource, headers=headers))

    async def delete(self, rtype: str, rid: str) -> None:
        await self.request("DELETE", f"{rtype}/{rid}")

    async def history(self, rtype: str, rid: str | None = None, params: Any = None) -> dict:
        return await self._json("GET", f"{rtype}/{rid}/_history" if rid else f"{rtype}/_history", params=params)

    async def transaction(self, bundle: dict, *, prefer: str | None = None) -> dict:
        headers = {"Prefer": f"return={prefer}"} if prefer else None
        return await self._json("POST", "", json_body=bundle, headers=headers)

    async def find_appointments(self, params: Any = None) -> dict:
        return await self._json("GET", "Appointment/$find", params=params)

    async def book(self, appointment: dict) -> dict:
        """``Appointment/$book``: returns the booked Appointment; a taken slot raises ConflictError."""
        body = {"resourceType": "Parameters", "parameter": [{"name": "appt-resource", "resource": appointment}]}
        return await self._json("POST", "Appointment/$book", json_body=body)


def attachment_text(attachment: dict) -> str:
    """Decode a text/* Attachment's inline base64 data."""
    return base64.b64decode(attachment.get("data", "")).decode("utf-8")


class FhirClients:
    """One client (one connection pool) per tenant. A tenant whose base URL or credentials changed
    gets a new client and its old pool is retired; tenants never wait on each other's start-up."""

    def __init__(self) -> None:
        self._cache: TenantCache[FhirClient] = TenantCache(name="fhir")

    async def get(self, tenant: str, base_url: str, credentials: SmartCredentials | None = None,
                  **kwargs) -> FhirClient:
        async def make() -> FhirClient:
            client = FhirClient(base_url, credentials=credentials, **kwargs)
            try:
                await client.start()
            except BaseException:
                await client.close()
                raise
            return client

        return await self._cache.get(tenant, make, ident=(base_url, credentials))

    async def close(self) -> None:
        await self._cache.close()


__all__ = ["FhirClient", "FhirClients", "SmartCredentials", "WriteResult", "new_client_key", "attachment_text",
           "RetryableError"]
