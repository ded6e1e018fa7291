"""HTTP services run in the test's own event loop (the sandbox gateway, docket's API), each on a
socket bound before the service is built: the port is known up front and never raced for."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI


def listening() -> socket.socket:
    """A loopback socket bound to a free port, for `served`."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def served(app: FastAPI, sock: socket.socket) -> AsyncIterator[str]:
    """Serve `app` on `sock` until the block ends; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # the start-up failure, raised here
                raise RuntimeError("the server stopped before it started")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port_of(sock)}"
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()
