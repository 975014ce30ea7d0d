"""`smsledger receive`: Tencent's push callbacks, stored durably before they are acknowledged.

Tencent POSTs delivery receipts and replies to the URLs configured in its console; a push that is
not acknowledged is retried only twice more. So a push is answered `{"result": 0, "errmsg": "OK"}`
only after its raw body is in the spool (`Spool.write`: temp file, fsync, rename, fsync of the
folder), exactly like a queue pull, under its own action name; the loader maps it later
(`pipelines.ingest.callbacks`). A push that cannot be stored gets 503, so that it is retried.

    POST /callbacks/<SMSLEDGER_CALLBACK_TOKEN>/status/<SmsSdkAppId>   delivery-status pushes (a JSON array)
    POST /callbacks/<SMSLEDGER_CALLBACK_TOKEN>/status                 the same, with one application only
    POST /callbacks/<SMSLEDGER_CALLBACK_TOKEN>/reply                  reply pushes (a JSON object)

A status push does not say its application, and its URL is set per application in the console:
so the URL says it, and the push is spooled under that application (its file name carries it, as
a pull's does). An application not in SMSLEDGER_SDK_APP_ID gets 404 naming it. The bare `/status`
is the one application's when there is one; with several it is refused (404 naming the fix),
since filing one application's receipts under another would be silently wrong. The reply URL is
one per account and a reply push does not say its application either: with one application it is
that one's; with several it is spooled without one, and staging and the marts attribute it to the
application whose message it answers (`pipelines.warehouse.staging.build_replies`).

Pushes are not signed, so the token in the path is the secret that tells Tencent from anybody
else, with an optional allowlist of source networks (`SMSLEDGER_CALLBACK_ALLOW`). Refusals:
403 from outside the allowlist (before the path is even looked at), 404 for any other path or a
wrong token (the same answer, so a guess learns nothing), 405 for a method other than POST, 413
beyond `SMSLEDGER_CALLBACK_MAX_BODY_BYTES`; nothing refused is stored. A body that is the wrong
shape is still stored and acknowledged: resending the same bytes cannot make them right, and the
loader quarantines them with the reason.

One asyncio loop serves every connection (at most `SMSLEDGER_CALLBACK_MAX_CONNECTIONS`; beyond
it, 503 at once); spool writes run on a small thread pool, since fsync blocks. Each request must
arrive whole within `SMSLEDGER_CALLBACK_TIMEOUT_SECONDS` of its connection being opened or idle.
SIGTERM stops accepting, lets requests under way finish, then exits. One log line per problem,
and never the token: it is scrubbed from every line of this logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hmac
import http
import ipaddress
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import h11
import orjson

from pipelines.config import ConfigError, IPNetwork, Settings
from pipelines.ingest import callbacks
from pipelines.spool import Spool

log = logging.getLogger("smsledger.receive")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_PREFIX = b"/callbacks/"
_MAX_HEAD = 16 * 1024  # request line and headers; beyond it, 431
_READ_SIZE = 64 * 1024
_SPOOL_WRITERS = 32  # concurrent fsyncs share journal commits: 8 threads write 550 files/s here, 32 about 1,600


@dataclasses.dataclass
class Counters:
    stored: int = 0  # pushes acknowledged (in the spool)
    malformed: int = 0  # of which not the documented shape
    refused: int = 0  # requests and connections refused (403, 404, 405, 408, 413, 431, 400, 503 busy)
    failed: int = 0  # pushes that could not be stored (503)


class _Refusal(Exception):
    """A request answered with an error status and the connection closed; `reason` is logged.
    `answer` is said to the client too (only to one that knew the token: a guess learns nothing)."""

    def __init__(self, status: int, reason: str, headers: Sequence[tuple[bytes, bytes]] = (), *,
                 answer: str | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers, self.answer = status, reason, list(headers), answer


def route(target: bytes, token: bytes, sdk_app_ids: Sequence[str]) -> tuple[str, str | None]:
    """The callback action and application of a request target (query ignored), or _Refusal 404.
    The token is compared in constant time whatever the rest of the path; only a request that
    knew it is told why its path is refused."""
    path = target.split(b"?", 1)[0]
    rest = path.removeprefix(_PREFIX)
    given, _, route_path = rest.partition(b"/")
    if not (hmac.compare_digest(given, token) and path.startswith(_PREFIX)):
        raise _Refusal(404, "unknown path (a wrong or missing token?)")
    kind, _, application = route_path.partition(b"/")
    if route_path == b"reply":
        # one reply URL per account, and the push names no application: with one configured it is
        # that one's; with several, staging and the marts attribute it (callbacks.UNSAID_APPLICATION)
        return callbacks.REPLY, sdk_app_ids[0] if len(sdk_app_ids) == 1 else None
    if kind != b"status" or (route_path != b"status" and not application.isdigit()):
        raise _Refusal(404, "unknown path (expected /status/<SmsSdkAppId> or /reply after the token)")
    if route_path == b"status":
        if len(sdk_app_ids) == 1:
            return callbacks.STATUS, sdk_app_ids[0]
        reason = (f"/status without an application, with several in SMSLEDGER_SDK_APP_ID: set each application's "
                  f"status callback URL to .../status/<SmsSdkAppId> ({', '.join(sdk_app_ids)})")
        raise _Refusal(404, reason, answer=reason)
    sdk_app_id = application.decode("ascii")
    if sdk_app_id not in sdk_app_ids:
        reason = f"application {sdk_app_id} is not in SMSLEDGER_SDK_APP_ID ({', '.join(sdk_app_ids)})"
        raise _Refusal(404, reason, answer=reason)
    return callbacks.STATUS, sdk_app_id


class _ScrubToken(logging.Filter):
    """Replaces the token in every record of the receiver's logger, whatever put it there (a
    client may echo it in a malformed request line)."""

    def __init__(self, token: str):
        super().__init__()
        self.token = token

    def scrub(self, text: str) -> str:
        return text.replace(self.token, "<SMSLEDGER_CALLBACK_TOKEN>")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = self.scrub(message), None
        return True


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def client_address(peer: IPAddress | None, headers: Sequence[tuple[bytes, bytes]],
                   trusted_proxies: Sequence[IPNetwork]) -> IPAddress | None:
    """Who sent a request: the peer, unless the peer is a trusted proxy, in which case the
    address it forwards. X-Forwarded-For is read from the right, skipping trusted proxies (the
    left end is whatever the client wrote); X-Real-IP when there is no X-Forwarded-For. None when
    a trusted proxy does not say, or says something that is not an address."""
    if peer is None or not _within(peer, trusted_proxies):
        return peer
    forwarded = [value for name, value in headers if name == b"x-forwarded-for"]
    if forwarded:
        address = None
        for hop in reversed(b",".join(forwarded).decode("latin-1").split(",")):
            address = _address(hop)
            if address is None or not _within(address, trusted_proxies):
                return address
        return address  # every hop is a trusted proxy: the leftmost is the client
    real = [value for name, value in headers if name == b"x-real-ip"]
    return _address(real[0].decode("latin-1")) if len(real) == 1 else None


class CallbackService:
    """Receives pushes on one asyncio loop; `listen` starts it, `stop` stops it gracefully."""

    def __init__(self, settings: Settings, *, spool_writers: int = _SPOOL_WRITERS):
        if not settings.callback_token:
            raise ConfigError("set SMSLEDGER_CALLBACK_TOKEN (the secret path segment of the callback URLs, "
                              "e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; see .env.example)")
        self._token = settings.callback_token.encode()
        self.sdk_app_ids = settings.sdk_app_ids
        self.allow = settings.callback_allow
        self.trusted_proxies = settings.callback_trusted_proxies
        self.max_body = settings.callback_max_body_bytes
        self.max_connections = settings.callback_max_connections
        self.timeout = settings.callback_timeout_seconds
        self.spool = _writable_spool(settings)
        self.counters = Counters()
        self.stopping = False
        self._writers = ThreadPoolExecutor(max_workers=spool_writers, thread_name_prefix="receive-spool")
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task, bool] = {}  # task -> inside a request (not idle)
        self._scrub = _ScrubToken(settings.callback_token)
        log.addFilter(self._scrub)

    async def listen(self, host: str, port: int) -> int:
        """Start accepting; returns the port (useful with port 0)."""
        try:
            self._server = await asyncio.start_server(self._connection, host, port, backlog=1024)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --host or --port") from None
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting, close idle connections, let requests under way finish (at most a
        request timeout and a few seconds), then close what is left."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for task, busy in list(self._connections.items()):
            if not busy:
                task.cancel()
        pending = list(self._connections)
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.timeout + 5)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        self._writers.shutdown(wait=True)
        log.removeFilter(self._scrub)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = _address(str(peername[0])) if isinstance(peername, tuple) and peername else None
        task = asyncio.current_task()
        if self.stopping or len(self._connections) >= self.max_connections:
            self.counters.refused += 1
            log.warning("refused a connection from %s: %d connections open (SMSLEDGER_CALLBACK_MAX_CONNECTIONS); "
                        "answered 503", peer, len(self._connections))
            with contextlib.suppress(Exception):
                writer.write(_BUSY)
                await asyncio.wait_for(writer.drain(), 1)
            writer.transport.abort()
            return
        self._connections[task] = False
        try:
            await self._serve(reader, writer, peer, task)
        except asyncio.CancelledError:
            pass  # stopped, or the peer went away
        except (ConnectionError, TimeoutError):
            pass
        except Exception as exc:  # a bug must cost one connection, never the service
            log.error("internal error on a connection from %s: %s: %s", peer, type(exc).__name__, exc)
        finally:
            del self._connections[task]
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: IPAddress | None,
                     task: asyncio.Task) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        while not self.stopping:
            self._connections[task] = False
            who, head = str(peer), False
            try:
                try:
                    async with asyncio.timeout(self.timeout):
                        request = await self._next(conn, reader, task)
                        if type(request) is not h11.Request:
                            return  # the client closed an idle connection
                        head = request.method == b"HEAD"
                        client = client_address(peer, request.headers, self.trusted_proxies)
                        if client != peer:
                            who = f"{client or 'an unnamed client'} via proxy {peer}"
                        action, sdk_app_id = self._admit(request, client)
                        if conn.client_is_waiting_for_100_continue:
                            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
                        body = await self._body(conn, reader)
                except TimeoutError:
                    if self._connections[task]:
                        raise _Refusal(408, f"the request did not arrive whole within {self.timeout:g}s") from None
                    return  # idle keep-alive connection
            except _Refusal as refusal:
                self.counters.refused += 1
                log.warning("refused a request from %s: %s; answered %d", who, refusal.reason, refusal.status)
                await self._answer(conn, writer, refusal.status, _error(refusal.status, refusal.answer),
                                   refusal.headers, close=True, head=head)
                return
            except h11.RemoteProtocolError as exc:
                self.counters.refused += 1
                status = exc.error_status_hint
                # scrubbed before it is cut short: a cut could leave a piece of the token
                detail = self._scrub.scrub(str(exc))[:100]
                log.warning("refused a request from %s: malformed HTTP (%s); answered %d", who, detail, status)
                await self._answer(conn, writer, status, _error(status), close=True)
                return
            if body is None:
                log.warning("a push from %s was cut off before its body was whole; nothing stored", who)
                return
            if not await self._store(conn, writer, who, action, sdk_app_id, body):
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # the client asked to close, or we are stopping
            conn.start_next_cycle()

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader, task: asyncio.Task | None = None):
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await reader.read(_READ_SIZE)
            if data and task is not None:
                self._connections[task] = True  # a request has begun: a graceful stop waits for it
            conn.receive_data(data)

    def _admit(self, request: h11.Request, client: IPAddress | None) -> tuple[str, str | None]:
        """The action and application to spool the request's body under, or _Refusal."""
        if self.allow and (client is None or not _within(client, self.allow)):
            raise _Refusal(403, "source not in SMSLEDGER_CALLBACK_ALLOW")
        action, sdk_app_id = route(request.target, self._token, self.sdk_app_ids)
        if request.method != b"POST":
            raise _Refusal(405, f"method {request.method.decode('latin-1')} (only POST)", [(b"allow", b"POST")])
        for name, value in request.headers:
            if name == b"content-length" and int(value) > self.max_body:
                raise _Refusal(413, f"a body of {int(value)} bytes (SMSLEDGER_CALLBACK_MAX_BODY_BYTES="
                                    f"{self.max_body})")
        return action, sdk_app_id

    async def _body(self, conn: h11.Connection, reader: asyncio.StreamReader) -> bytes | None:
        """The whole body, or None when the client closed before it was whole."""
        chunks, size = [], 0
        while True:
            event = await self._next(conn, reader)
            if type(event) is h11.Data:
                size += len(event.data)
                if size > self.max_body:
                    raise _Refusal(413, f"a body beyond {self.max_body} bytes (SMSLEDGER_CALLBACK_MAX_BODY_BYTES)")
                chunks.append(bytes(event.data))
            elif type(event) is h11.EndOfMessage:
                return b"".join(chunks)
            else:
                return None

    async def _store(self, conn: h11.Connection, writer: asyncio.StreamWriter, who: str, action: str,
                     sdk_app_id: str | None, body: bytes) -> bool:
        """Spool the body, then acknowledge it; whether the connection may serve another request."""
        kind = "status" if action == callbacks.STATUS else "reply"
        write = functools.partial(self.spool.write, action, body, sdk_app_id=sdk_app_id)
        try:
            spooled = await asyncio.get_running_loop().run_in_executor(self._writers, write)
        except Exception as exc:
            self.counters.failed += 1
            log.error("could not store a %s push from %s (%s: %s); answered 503 so that Tencent retries it",
                      kind, who, type(exc).__name__, exc)
            await self._answer(conn, writer, 503, _error(503), close=True)
            return False
        self.counters.stored += 1
        problem = callbacks.body_problem(action, body)
        if problem is not None:
            self.counters.malformed += 1
            log.warning("a %s push from %s is not the documented shape (%s); stored as batch %s for the loader "
                        "to quarantine, answered 200 since resending it cannot help", kind, who, problem,
                        spooled.batch_id)
        await self._answer(conn, writer, 200, callbacks.ACKNOWLEDGED, close=self.stopping)
        return True

    async def _answer(self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int, body: bytes,
                      headers: Sequence[tuple[bytes, bytes]] = (), *, close: bool = False, head: bool = False) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # nothing can be said on this connection any more
        fields = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
        if close:
            fields.append((b"connection", b"close"))
        try:
            data = conn.send(h11.Response(status_code=status, headers=fields, reason=_phrase(status)))
            if not head:  # an answer to HEAD has no body
                data += conn.send(h11.Data(data=body))
            data += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return
        writer.write(data)
        await asyncio.wait_for(writer.drain(), self.timeout)


def _phrase(status: int) -> bytes:
    return http.HTTPStatus(status).phrase.encode()


def _error(status: int, answer: str | None = None) -> bytes:
    """A refusal's body, in the shape of the acknowledgement with a non-zero result."""
    if answer is not None:
        return orjson.dumps({"result": 1, "errmsg": answer})
    return b'{"result":1,"errmsg":"%s"}' % _phrase(status)


_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
         b"retry-after: 1\r\nconnection: close\r\n\r\n%s" % (len(_error(503)), _error(503)))


def _writable_spool(settings: Settings) -> Spool:
    """The spool, after checking that a file can be written, fsynced and removed in it: a
    receiver that cannot store must not start (it would answer 503 to every push)."""
    try:
        spool = Spool(settings.spool_dir)
        probe = spool.tmp / f"{os.getpid()}.receive-probe"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"SMSLEDGER_SPOOL_DIR={settings.spool_dir}: cannot write there ({exc.strerror})") from None
    return spool


class Receiver:
    """The service on a background thread, for tests and benchmarks; a context manager.

        with Receiver(settings) as receiver:
            receiver.url    # http://127.0.0.1:PORT
    """

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0):
        self.settings, self.host, self.port = settings, host, port
        self.service: CallbackService | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Receiver:
        listening: Future[int] = Future()

        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            try:
                self.service = CallbackService(self.settings)
                await _run(self.service, self.host, self.port, self._stop, listening.set_result)
            except BaseException as exc:
                if listening.done():
                    raise
                listening.set_exception(exc)  # raised by start()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="smsledger-receive", daemon=True)
        self._thread.start()
        self.port = listening.result()
        return self

    def close(self) -> None:
        """Stops gracefully, as SIGTERM does."""
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _run(service: CallbackService, host: str, port: int, stop: asyncio.Event,
               listening: Callable[[int], object]) -> None:
    """Serve from `listen` until `stop` is set, then stop gracefully."""
    listening(await service.listen(host, port))
    await stop.wait()
    log.info("stopping: finishing the requests under way")
    await service.stop()


def serve(settings: Settings, host: str, port: int) -> None:
    """Receive in the foreground until SIGTERM or SIGINT."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s smsledger receive: %(levelname)s %(message)s")
    asyncio.run(_serve(CallbackService(settings), host, port))


async def _serve(service: CallbackService, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    allow = ",".join(map(str, service.allow)) or "any source"

    status_paths = ", ".join(f"/status/{app}" for app in service.sdk_app_ids)
    if len(service.sdk_app_ids) == 1:
        status_paths += " (or /status)"

    def listening(bound: int) -> None:
        log.info("listening on %s:%d for POST /callbacks/<SMSLEDGER_CALLBACK_TOKEN>%s and /reply; spool %s; "
                 "allowed: %s", host, bound, status_paths, service.spool.root, allow)

    await _run(service, host, port, stop, listening)
    c = service.counters
    log.info("stopped: %d pushes stored (%d not the documented shape), %d refused, %d not stored",
             c.stored, c.malformed, c.refused, c.failed)
