"""The listening side of `codekiln serve`: the socket, uvicorn's settings, and the two
pieces of uvicorn that are adapted here.

- `Protocol`: uvicorn's h11 protocol waits for a request head as long as a client keeps the
  connection open (a slow-loris holds it forever) and answers what h11 cannot parse in plain
  text. Here a head must arrive within `read_timeout` (else 408 and the connection closes),
  and every refusal is JSON: 414 for a request line, 431 for headers longer than h11's
  buffer, 400 otherwise. (A body's deadline is the routes': `App.read_json`.)
- `Server`: cancels running generations as shutdown starts, so answers still being written
  end at once (503) instead of holding shutdown until they finish.
"""

from __future__ import annotations

import asyncio
import json
import socket
from functools import partial
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from codekiln.serve.api import ApiError
from codekiln.serve.config import ServeConfig

MAX_URL_BYTES = 8 * 1024  # path and query: 414 beyond
MAX_HEAD_BYTES = 32 * 1024  # request line and headers: 431 beyond (h11's buffer limit too)
GRACEFUL_SECONDS = 5.0  # at shutdown, how long answers still being written may take


class Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request heads and JSON for bad ones
    (see the module docstring)."""

    def __init__(self, *args: Any, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timeout = read_timeout
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a whole head arrived: the request is the route's now
            self._disarm()
        elif self.cycle is None or self.cycle.response_complete:
            self._arm()  # part of a head: it has read_timeout to end

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self._read_timeout, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered
        message = f"the request head did not arrive whole within {self._read_timeout:g} s"
        self._refuse(408, message, "request_timeout")

    def send_400_response(self, msg: str) -> None:
        buffered, _ = self.conn.trailing_data
        limit = self.config.h11_max_incomplete_event_size or h11.DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
        if len(buffered) > limit:
            line = buffered.find(b"\r\n")
            if line < 0 or line > MAX_URL_BYTES:
                self._refuse(414, f"the URL is over {MAX_URL_BYTES} bytes", None)
            else:
                self._refuse(431, f"the request head is over {limit} bytes", None)
        else:
            self._refuse(400, f"not a valid HTTP/1.1 request ({msg})", "invalid_http")

    def _refuse(self, status: int, message: str, code: str | None) -> None:
        """Answer in OpenAI's error shape (no route is known yet) and close."""
        if self.transport.is_closing():
            return
        body = json.dumps(ApiError(status, message, code=code).openai_body()).encode()
        reason = _REASONS.get(status, "Bad Request").encode()
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, reason, len(body))
        )
        self.transport.write(head + body)
        self.transport.close()


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
}


class Server(uvicorn.Server):
    """uvicorn's server, cancelling running generations as shutdown starts."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self.codekiln_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.codekiln_app.stop_generations()
        await super().shutdown(sockets)


def uvicorn_config(app: Any, config: ServeConfig) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=partial(Protocol, read_timeout=config.read_timeout),
        loop="asyncio",
        lifespan="off",
        log_config=None,  # the process's logging, as it is
        access_log=False,  # App logs one line per request
        server_header=False,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )


def bind(config: ServeConfig) -> socket.socket:
    """The socket to serve, bound here so that port 0's pick is known before uvicorn
    serves it, and a port in use is reported before the model loads."""
    from codekiln.errors import UserError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            config.host, config.port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise UserError(
            f"cannot listen on {config.host}:{config.port} ({exc.strerror or exc}): "
            "pick another --port or --host"
        ) from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
