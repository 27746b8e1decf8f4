"""A small HTTP/1.1 load generator for bench_ingest.py when ``wrk`` is not installed.

    python tests/benchmarks/http_load.py URL BODY_FILE SECONDS CONCURRENCY [HEADER ...]

``CONCURRENCY`` keep-alive connections each send ``POST`` requests one after another for
``SECONDS`` and print one JSON line: requests, requests per second, p50/p99 latency in ms,
non-2xx answers and transport errors. Every request carries its own ``X-GitHub-Delivery``.

httpx spends more CPU per request than the server it loads (its ratios said little on two
cores); this client writes prebuilt request bytes and reads the answer with a
``asyncio.Protocol`` (status line, ``Content-Length``, body), some ten times less work per
request, so on a small machine the server rather than the client sets the pace. It runs in a
process of its own, as wrk does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit


class Connection(asyncio.Protocol):
    """One keep-alive connection: send a request, wait for its whole answer, repeat."""

    def __init__(self) -> None:
        self.buffer = b""
        self.waiting: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0 or self.waiting is None:
            return
        head = self.buffer[:head_end].lower()
        marker = head.find(b"content-length:")
        length = 0
        if marker >= 0:
            line_end = head.find(b"\r\n", marker)
            length = int(head[marker + 15 : line_end if line_end >= 0 else None])
        if len(self.buffer) < head_end + 4 + length:
            return
        status = int(self.buffer[9:12])
        self.buffer = self.buffer[head_end + 4 + length :]
        if not self.waiting.done():
            self.waiting.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_exception(ConnectionError("connection closed"))

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        self.waiting = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiting


async def run(
    url: str, body: bytes, seconds: float, concurrency: int, headers: list[str]
) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    fixed = "".join(f"{h}\r\n" for h in headers)
    prefix = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n{fixed}"
        f"Content-Length: {len(body)}\r\n"
    ).encode()
    latencies: list[float] = []
    counts = {"failures": 0, "errors": 0}
    loop = asyncio.get_running_loop()
    stop = time.perf_counter() + seconds
    started = time.time_ns()

    async def client(number: int) -> None:
        sequence = 0
        while time.perf_counter() < stop:
            try:
                _, conn = await loop.create_connection(Connection, host, port)
            except OSError:
                counts["errors"] += 1
                await asyncio.sleep(0.05)
                continue
            try:
                while time.perf_counter() < stop:
                    sequence += 1
                    delivery = f"X-GitHub-Delivery: {started}-{number}-{sequence}\r\n\r\n"
                    begun = time.perf_counter()
                    status = await conn.request(prefix + delivery.encode() + body)
                    latencies.append(time.perf_counter() - begun)
                    if not 200 <= status < 300:
                        counts["failures"] += 1
            except ConnectionError:
                counts["errors"] += 1
            finally:
                if conn.transport is not None:
                    conn.transport.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    count = len(latencies)
    return {
        "requests": count,
        "rps": count / elapsed,
        "p50_ms": latencies[count // 2] * 1000 if count else 0.0,
        "p99_ms": latencies[max(0, int(count * 0.99) - 1)] * 1000 if count else 0.0,
        "failures": counts["failures"],
        "socket_errors": counts["errors"],
    }


def main(argv: list[str]) -> int:
    url, body_file, seconds, concurrency, *headers = argv
    result = asyncio.run(
        run(url, Path(body_file).read_bytes(), float(seconds), int(concurrency), headers)
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
