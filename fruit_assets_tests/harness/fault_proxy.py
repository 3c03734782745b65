"""A fault-injecting HTTP/1.1 proxy in front of the real S3 test server (a harness, not a mock).

Every request a rule does not refuse reaches SeaweedFS byte for byte, its Host header as the client
sent it, so SigV4 signatures stay valid (point a client at it with ``AWS_ENDPOINT_URL=proxy.endpoint``).
Rules decide per request: pass, delay, answer ``503 SlowDown`` or ``403 AccessDenied`` (S3's own
XML errors), or reset the connection (RST, not a clean close) before the request is forwarded,
part-way through the answer, or instead of it (the request took effect, the client never hears so).

    with FaultProxy(s3_server["endpoint"], seed=1) as proxy:
        proxy.add_rule(SLOW_DOWN, every=3)
        proxy.add_rule(RESET, method="GET", key=r"/Training/", probability=0.05)
        ...  # run things with AWS_ENDPOINT_URL=proxy.endpoint
        assert not proxy.requests(method="GET", key="huge.jpg")
"""

from __future__ import annotations

import random
import re
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

_MAX_HEAD_BYTES = 64 * 1024
_RELAY_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Delay:
    """Forward the request after ``seconds``."""

    seconds: float


@dataclass(frozen=True)
class SlowDown:
    """Answer ``503 SlowDown`` the way S3 throttles, without forwarding the request."""


@dataclass(frozen=True)
class Reset:
    """Reset the client's connection (SO_LINGER 0: the client sees ECONNRESET), before the request
    is forwarded. With ``after_response_bytes``, the request is forwarded and the reset comes that
    many bytes into the answer's body (a connection dropped mid-download). With ``answer_lost``, the
    request is forwarded and takes effect, and the reset comes instead of the answer (a write that
    happened although its client saw it fail: what a retried conditional write must expect)."""

    after_response_bytes: int | None = None
    answer_lost: bool = False


@dataclass(frozen=True)
class AccessDenied:
    """Answer ``403 AccessDenied`` without forwarding the request: what AWS answers a request no
    policy allows, and a GET of a deleted key to a caller that may not s3:ListBucket it (the test
    server, with root credentials, never does). ``message``: the error's Message; AWS's own, for a
    caller of the bucket's account, names it ("User: arn:... is not authorized to perform: ...")."""

    message: str = "Access Denied"


SLOW_DOWN = SlowDown()
RESET = Reset()
ACCESS_DENIED = AccessDenied()


@dataclass(frozen=True)
class Request:
    """What a rule sees: the request's number in arrival order (from 1), method, raw target and
    headers (lower-case names); ``key`` is ``bucket/key`` percent-decoded (path-style addressing)."""

    number: int
    method: str
    target: str
    headers: dict[str, str]

    @property
    def key(self) -> str:
        return unquote(urlsplit(self.target).path.lstrip("/"))

    @property
    def query(self) -> str:
        return urlsplit(self.target).query


@dataclass
class LoggedRequest:
    number: int
    method: str
    key: str
    query: str
    # "pass", "delay", "slow_down", "access_denied", "reset", "reset_mid_response", "reset_answer_lost"
    action: str
    # The server's answer (what the client got, but with reset_answer_lost); None: never forwarded,
    # or cut off mid-answer.
    status: int | None = None


@dataclass
class Rule:
    """Applies to requests matching ``method`` and the regex ``key`` (searched in ``bucket/key``).
    Of those it fires on: the first ``first`` ones, or every ``every``-th one, or each with
    ``probability`` (the proxy's seeded RNG), or all of them. ``action`` is an action, or a
    function of the ``Request`` returning one (a hook: it may act on the server before passing)."""

    action: object
    method: str | None = None
    key: str | None = None
    first: int | None = None
    every: int | None = None
    probability: float | None = None
    matched: int = field(default=0, init=False)

    def matches(self, request: Request) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        return self.key is None or re.search(self.key, request.key) is not None

    def fires(self, rng: random.Random) -> bool:
        self.matched += 1
        if self.first is not None:
            return self.matched <= self.first
        if self.every is not None:
            return self.matched % self.every == 0
        if self.probability is not None:
            return rng.random() < self.probability
        return True


class _ClientGone(Exception):
    """The client or the server closed its side mid-message: nothing more to relay."""


class FaultProxy:
    def __init__(self, upstream_endpoint: str, seed: int = 0):
        parts = urlsplit(upstream_endpoint)
        self.upstream = (parts.hostname, parts.port or 80)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._count = 0
        self.log: list[LoggedRequest] = []
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    # -- rules and the log ------------------------------------------------------------------

    def add_rule(self, action, method: str | None = None, key: str | None = None, first: int | None = None,
                 every: int | None = None, probability: float | None = None) -> Rule:
        rule = Rule(action, method, key, first, every, probability)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def requests(self, method: str | None = None, key: str | None = None) -> list[LoggedRequest]:
        """The logged requests with that method whose ``bucket/key`` matches the regex ``key``."""
        with self._lock:
            return [entry for entry in self.log if (method is None or entry.method == method)
                    and (key is None or re.search(key, entry.key))]

    def _decide(self, method: str, target: str, headers: dict[str, str]) -> tuple[Request, object, LoggedRequest]:
        with self._lock:
            self._count += 1
            request = Request(self._count, method, target, headers)
            action = None
            for rule in self._rules:
                if rule.matches(request) and rule.fires(self._rng):
                    action = rule.action
                    break
        if callable(action):
            action = action(request)
        name = {Delay: "delay", SlowDown: "slow_down", AccessDenied: "access_denied",
                type(None): "pass"}.get(type(action))
        if isinstance(action, Reset):
            name = ("reset_answer_lost" if action.answer_lost
                    else "reset" if action.after_response_bytes is None else "reset_mid_response")
        entry = LoggedRequest(request.number, method, request.key, request.query, name)
        with self._lock:
            self.log.append(entry)
        return request, action, entry

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> "FaultProxy":
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, name="fault-proxy-accept", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            _close(sock)

    def _accept(self) -> None:
        listener = self._listener
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), name="fault-proxy-conn", daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        _close(sock)

    # -- one client connection: its requests in turn, each on a fresh connection to the server --
    # (never a kept-alive one the server may have closed meanwhile: that would be a fault no rule made)

    def _serve(self, client: socket.socket) -> None:
        client_in = client.makefile("rb")
        try:
            while True:
                head = _read_head(client_in)
                if head is None:
                    return  # the client closed its idle connection
                request_line, headers = _parse_head(head)
                method, target, _version = request_line.split(" ", 2)
                request, action, entry = self._decide(method, target, headers)
                if isinstance(action, Reset) and action.after_response_bytes is None and not action.answer_lost:
                    _reset(client)
                    return
                if isinstance(action, (SlowDown, AccessDenied)):
                    if "100-continue" not in headers.get("expect", "").lower():
                        _drain_body(client_in, headers)  # an unread body would turn our answer into a reset
                    # Logged before the answer leaves: a client that has its answer may read the log.
                    if isinstance(action, SlowDown):
                        entry.status = 503
                        client.sendall(_s3_error(request, 503, "Slow Down", "SlowDown",
                                                 "Please reduce your request rate."))
                    else:
                        entry.status = 403
                        client.sendall(_s3_error(request, 403, "Forbidden", "AccessDenied", action.message))
                    return  # answered with "Connection: close"
                if isinstance(action, Delay):
                    time.sleep(action.seconds)
                upstream = socket.create_connection(self.upstream)
                self._track(upstream)
                try:
                    with upstream.makefile("rb") as upstream_in:
                        keep = self._forward(method, head, headers, client, client_in, upstream, upstream_in,
                                             action, entry)
                finally:
                    self._untrack(upstream)
                if not keep:
                    return
        except (_ClientGone, OSError):
            return
        finally:
            client_in.close()
            self._untrack(client)

    def _forward(self, method, head, headers, client, client_in, upstream, upstream_in, action, entry) -> bool:
        """Relays one request and its answer unchanged. -> whether the client's connection stays open."""
        upstream.sendall(head)
        expects_continue = "100-continue" in headers.get("expect", "").lower()
        if expects_continue:
            # The server says 100 (send the body) or answers at once (then the body never comes).
            status, response_head, response_headers = _read_response_head(upstream_in)
            if status != 100:
                entry.status = status
            client.sendall(response_head)
            if status != 100:
                _relay_body(upstream_in, client, response_headers, method, status, None)
                return False  # whether the client sends its body anyway is unknowable: start afresh
        _relay_body(client_in, upstream, headers, method, None, None)
        lost = isinstance(action, Reset) and action.answer_lost
        cut = action.after_response_bytes if isinstance(action, Reset) else None
        while True:
            status, response_head, response_headers = _read_response_head(upstream_in)
            if status != 100:
                # Logged before the answer leaves (a client that has its answer may read the log);
                # an answer cut short never reached the client: no status.
                entry.status = None if cut is not None else status
            if not lost:
                client.sendall(response_head)
            if status != 100:
                break
        if lost:  # the server answered (and did what was asked); the client never hears of it
            _drain_body(upstream_in, response_headers, method, status)
            _reset(client)
            return False
        if cut is not None:
            _relay_body(upstream_in, client, response_headers, method, status, cut)
            _reset(client)
            return False
        until_close = _relay_body(upstream_in, client, response_headers, method, status, None)
        closing = any("close" in h.get("connection", "").lower() for h in (headers, response_headers))
        return not (until_close or closing)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _reset(sock: socket.socket) -> None:
    """Close with an RST: linger on, timeout 0, so the client's next read or write fails with
    ECONNRESET instead of seeing a clean end of stream."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    _close(sock)


def _read_head(stream) -> bytes | None:
    lines = []
    size = 0
    while True:
        line = stream.readline(_MAX_HEAD_BYTES)
        if not line:
            if lines:
                raise _ClientGone()
            return None
        if not lines and line in (b"\r\n", b"\n"):
            continue  # tolerated stray CRLF between requests
        lines.append(line)
        size += len(line)
        if size > _MAX_HEAD_BYTES:
            raise _ClientGone()
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    first, *rest = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in rest:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return first, headers


def _read_response_head(stream) -> tuple[int, bytes, dict[str, str]]:
    head = _read_head(stream)
    if head is None:
        raise _ClientGone()
    status_line, headers = _parse_head(head)
    return int(status_line.split(" ", 2)[1]), head, headers


def _relay_body(source, sink: socket.socket, headers: dict[str, str], method: str, status: int | None,
                limit: int | None) -> bool:
    """Copies one message body, framed as its headers say (``status`` None: a request's body).
    ``limit``: stop after that many bytes. -> True when the body runs until the connection closes."""
    if status is not None and (method == "HEAD" or status < 200 or status in (204, 304)):
        return False
    if "chunked" in headers.get("transfer-encoding", "").lower():
        _relay_chunked(source, sink, limit)
        return False
    if "content-length" in headers:
        _relay_exactly(source, sink, int(headers["content-length"]), limit)
        return False
    if status is None:
        return False  # a request without a length has no body
    copied = 0
    while limit is None or copied < limit:
        data = source.read1(_RELAY_CHUNK if limit is None else min(_RELAY_CHUNK, limit - copied))
        if not data:
            break
        sink.sendall(data)
        copied += len(data)
    return True


def _relay_exactly(source, sink: socket.socket, length: int, limit: int | None) -> None:
    remaining = length if limit is None else min(length, limit)
    while remaining:
        data = source.read1(min(_RELAY_CHUNK, remaining))
        if not data:
            raise _ClientGone()
        sink.sendall(data)
        remaining -= len(data)


def _relay_chunked(source, sink: socket.socket, limit: int | None) -> None:
    """Chunk framing relayed as it comes (size lines, data, the last chunk, trailers)."""
    copied = 0
    while True:
        size_line = source.readline(_MAX_HEAD_BYTES)
        if not size_line:
            raise _ClientGone()
        sink.sendall(size_line)
        copied += len(size_line)
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers up to the blank line
                trailer = source.readline(_MAX_HEAD_BYTES)
                if not trailer:
                    raise _ClientGone()
                sink.sendall(trailer)
                if trailer in (b"\r\n", b"\n"):
                    return
        _relay_exactly(source, sink, size + 2, None if limit is None else max(0, limit - copied))
        copied += size + 2
        if limit is not None and copied >= limit:
            return


def _drain_body(source, headers: dict[str, str], method: str = "", status: int | None = None) -> None:
    """Reads one message body to its end, keeping nothing."""

    class _Discard:
        def sendall(self, _data):
            pass

    _relay_body(source, _Discard(), headers, method, status, None)


def _s3_error(request: Request, status: int, reason: str, code: str, message: str) -> bytes:
    """An S3 error answer: the status with S3's XML error body (no body for HEAD, as S3 does: the
    client then knows only the status, e.g. botocore's code "403")."""
    request_id = uuid.uuid4().hex[:16].upper()
    resource = "/" + request.key
    body = b"" if request.method == "HEAD" else (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{_xml_escape(message)}</Message>"
        f"<Resource>{_xml_escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/xml\r\n"
        f"Content-Length: {len(body) if request.method != 'HEAD' else 0}\r\n"
        f"x-amz-request-id: {request_id}\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode()
    return head + body


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
