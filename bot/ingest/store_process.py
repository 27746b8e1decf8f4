"""The delivery store in a process of its own, beside the service's event loop.

A delivery's reading (14 KB of JSON, its typed event, its lane) and its group commit are
Python, and in the serving process they held the one interpreter lock the event loop needs
to take the next request: with them on the loop and the writer's threads, ``vibe serve``
on SQLite took 0.41-0.46 of a bare endpoint's deliveries per second; with them here,
0.48-0.58 in four runs, p99 44-51 ms (issue 15, tests/benchmarks/bench_ingest.py). The
parent's end is two threads, not the event loop: on the loop, a turn's deliveries went
out only when the loop got to them, and the rate fell to 0.49 (PostgreSQL: 0.41 to 0.33).
So the request verifies the signature and the headers, hands the body as received to
:class:`StoreProcess`, and answers from what comes back: a 2xx still means the delivery
and its job are committed.

The child is ``python -m bot.ingest.store_process <fd>``, with one end of a socket pair;
the parent sends it its :class:`StoreConfig`, then lists of ``(seq, Received)``, and reads
lists of ``(seq, kind, value)``: ``taken`` with a :class:`bot.ingest.deliveries.Taken`,
``unstorable`` or ``away`` with the reason, ``error`` with the exception's text. Inside,
the child reads and stores as :class:`bot.ingest.deliveries.DeliveryWriter` does in
process: :func:`bot.ingest.deliveries.read_delivery`, and a batch of what has arrived in
one transaction (:func:`bot.ingest.deliveries.store_deliveries`). Both ends are this program's own
processes on a pair of sockets no one else holds (the child's end is passed to it alone,
the parent's is close-on-exec), so the messages are pickled, as multiprocessing's are: a
delivery's body travels as bytes, never read by the unpickler.

When the child ends (killed, out of memory), every delivery waiting on it answers 503 (the
database counts as away: GitHub redelivers, the catch-up job asks for what was missed) and
a new child is started at once. When the parent ends, the child reads the end of its
socket, finishes what it has and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from bot.ingest.deliveries import (
    AWAY,
    Incoming,
    Received,
    StoreResult,
    Taken,
    Unstorable,
    read_delivery,
    store_deliveries,
)
from bot.observability import configure_logging
from bot.store.engine import make_engine

log = structlog.get_logger(__name__)

# The most deliveries one message carries, either way.
MAX_BATCH = 200
# How long a child may take to start (import, engine) and to finish when closed.
START_SECONDS = 60.0
STOP_SECONDS = 30.0
READY = b"ready"


@dataclass(frozen=True)
class StoreConfig:
    """What the child needs of the settings: the database, the jobs' attempts, the bot's
    login (the control lane), and how to log."""

    database_url: str
    max_attempts: int
    bot_login: str
    log_level: str
    log_json: bool
    secrets: tuple[str, ...]


class StoreProcess:
    """The parent's side: :meth:`take` from the event loop; a thread sends what the
    requests hand over (a send must never block the event loop, even when the child is
    slow), another reads the answers and resolves the requests' futures."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Taken]]] = {}
        self._outbox: queue.SimpleQueue[tuple[int, Received] | None] = queue.SimpleQueue()
        self._child: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._closing = False
        self._threads: list[threading.Thread] = []

    @property
    def pid(self) -> int | None:
        child = self._child
        return None if child is None else child.pid

    @property
    def alive(self) -> bool:
        """A child runs and takes deliveries."""
        child = self._child
        return child is not None and child.poll() is None and self._conn is not None

    def start(self) -> None:
        """Start the child and wait until it can take deliveries (blocking: call it from a
        thread, not the event loop)."""
        with self._lock:
            if self._threads:
                return
            self._spawn()
            self._threads = [
                threading.Thread(target=self._send, name="vibe-store-send", daemon=True),
                threading.Thread(target=self._read, name="vibe-store-read", daemon=True),
            ]
        for thread in self._threads:
            thread.start()

    async def take(self, received: Received) -> Taken:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Taken] = loop.create_future()
        with self._lock:
            if self._closing or not self._threads:
                raise _away("the delivery store is not running")
            seq = next(self._seq)
            self._pending[seq] = (loop, future)
        self._outbox.put((seq, received))
        try:
            return await future
        finally:
            with self._lock:
                self._pending.pop(seq, None)

    def close(self) -> None:
        """Let the child finish what it has and end; fail whatever is left."""
        with self._lock:
            self._closing = True
            threads, self._threads = self._threads, []
        if not threads:
            return
        self._outbox.put(None)
        deadline = time.monotonic() + STOP_SECONDS
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        child = self._child
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        self._fail_pending("the delivery store stopped")

    def _spawn(self) -> None:
        """A new child, ready; its connection replaces the old one."""
        parent_end, child_end = socket.socketpair()
        with child_end:
            child = subprocess.Popen(
                [sys.executable, "-m", "bot.ingest.store_process", str(child_end.fileno())],
                pass_fds=[child_end.fileno()],
                stdin=subprocess.DEVNULL,
            )
        conn = Connection(parent_end.detach())
        try:
            conn.send_bytes(pickle.dumps(self.config))
            if not conn.poll(START_SECONDS) or conn.recv_bytes() != READY:
                raise OSError(f"the delivery store did not start within {START_SECONDS:g} s")
        except (OSError, EOFError):
            conn.close()
            child.kill()
            child.wait()
            raise
        self._child, self._conn = child, conn
        log.info("delivery_store.started", pid=child.pid)

    def _send(self) -> None:
        while True:
            first = self._outbox.get()
            batch = [first]
            while first is not None and len(batch) < MAX_BATCH:
                try:
                    batch.append(self._outbox.get_nowait())
                except queue.Empty:
                    break
                if batch[-1] is None:
                    break
            items = [item for item in batch if item is not None]
            conn = self._conn
            try:
                if conn is None:
                    raise OSError("no child")
                if items:
                    conn.send_bytes(pickle.dumps(items))
                if len(items) < len(batch):
                    conn.send_bytes(pickle.dumps(None))
            except OSError:
                # The child has ended: the reader starts another; these wait on none.
                self._fail([seq for seq, _ in items], "the delivery store's process ended")
            if len(items) < len(batch):
                return

    def _read(self) -> None:
        while True:
            conn = self._conn
            try:
                if conn is None:
                    raise EOFError
                answers = pickle.loads(conn.recv_bytes())  # noqa: S301 - our child's
            except (EOFError, OSError):
                if not self._replace(conn):
                    return
                continue
            self._resolve(answers)

    def _replace(self, conn: Connection | None) -> bool:
        """The child's end: fail what waited on it and, unless closing, start another.
        False when the store is closing."""
        child = self._child
        self._end(conn, child, STOP_SECONDS if self._is_closing() else 5.0)
        if self._is_closing():
            return False
        code = None if child is None else child.poll()
        log.error("delivery_store.ended", pid=None if child is None else child.pid, code=code)
        self._fail_pending("the delivery store's process ended")
        while not self._is_closing():
            try:
                self._spawn()
            except (OSError, EOFError) as exc:
                log.error("delivery_store.start_failed", error=str(exc))
                time.sleep(1.0)
                continue
            if not self._is_closing():
                return True
            # close() began while this child started, and its word may have gone to the
            # old one: the end of the socket tells this one to end.
            self._end(self._conn, self._child, STOP_SECONDS)
        return False

    def _is_closing(self) -> bool:
        with self._lock:
            return self._closing

    def _end(
        self, conn: Connection | None, child: subprocess.Popen[bytes] | None, wait: float
    ) -> None:
        """Close the child's socket (which ends a child still running) and wait for it."""
        with self._lock:
            if conn is not None:
                conn.close()
            self._conn = None
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(wait)

    def _resolve(self, answers: list[tuple[int, str, Any]]) -> None:
        calls: dict[asyncio.AbstractEventLoop, list[Callable[[], None]]] = {}
        with self._lock:
            for seq, kind, value in answers:
                waiting = self._pending.get(seq)
                if waiting is not None:
                    loop, future = waiting
                    calls.setdefault(loop, []).append(_settle(future, kind, value))
        _call_soon(calls)

    def _fail_pending(self, why: str) -> None:
        with self._lock:
            seqs = list(self._pending)
        self._fail(seqs, why)

    def _fail(self, seqs: list[int], why: str) -> None:
        """Answer the requests ``seqs`` 503: the store could not take their deliveries."""
        with self._lock:
            waiting = [self._pending[seq] for seq in seqs if seq in self._pending]
        calls: dict[asyncio.AbstractEventLoop, list[Callable[[], None]]] = {}
        for loop, future in waiting:
            calls.setdefault(loop, []).append(_settle(future, "away", why))
        _call_soon(calls)


def _away(why: str) -> OperationalError:
    """The store cannot take the delivery now: the database counts as away (503)."""
    return OperationalError("delivery store", None, RuntimeError(why))


def _settle(future: asyncio.Future[Taken], kind: str, value: Any) -> Callable[[], None]:
    def settle() -> None:
        if future.done():  # its request stopped waiting (bot/ingest/webhook.py)
            return
        if kind == "taken":
            future.set_result(value)
        elif kind == "unstorable":
            future.set_exception(Unstorable(value))
        elif kind == "away":
            future.set_exception(_away(value))
        else:
            future.set_exception(RuntimeError(f"the delivery store failed: {value}"))

    return settle


def _call_soon(calls: dict[asyncio.AbstractEventLoop, list[Callable[[], None]]]) -> None:
    """Run each loop's calls on that loop, in one turn of it."""
    for loop, settle in calls.items():
        with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
            loop.call_soon_threadsafe(_run_all, settle)


def _run_all(calls: list[Callable[[], None]]) -> None:
    for call in calls:
        call()


def serve(conn: Connection, config: StoreConfig) -> None:
    """The child's loop: take every delivery that has arrived (at least one, at most
    :data:`MAX_BATCH`), read each (:func:`bot.ingest.deliveries.read_delivery`), store them
    in one transaction (:func:`bot.ingest.deliveries.store_deliveries`: one refused
    delivery affects only itself) and send the answers back in one message. Deliveries
    that arrive meanwhile wait in the socket for the next turn: the group commit."""
    engine = make_engine(config.database_url, pre_ping=False)
    conn.send_bytes(READY)
    ended = False
    while not ended:
        batch: list[tuple[int, Received]] = []
        while not batch or (len(batch) < MAX_BATCH and conn.poll()):
            try:
                message = pickle.loads(conn.recv_bytes())  # noqa: S301 - our parent's
            except (EOFError, OSError):
                message = None
            if message is None:  # closed, or the parent has gone: store what is in hand
                ended = True
                break
            batch += message
        if batch:
            answers = _store(engine, config, batch)
            with contextlib.suppress(OSError):  # the parent has gone: nobody waits for them
                conn.send_bytes(pickle.dumps(answers))
    engine.dispose()


def _store(
    engine: Engine, config: StoreConfig, batch: list[tuple[int, Received]]
) -> list[tuple[int, str, Any]]:
    answers: dict[int, tuple[int, str, Any]] = {}
    read: list[tuple[int, Incoming, str | None]] = []
    for seq, received in batch:
        try:
            read.append((seq, *read_delivery(received, config.bot_login)))
        except Exception as exc:  # noqa: BLE001 - that delivery's failure, not the batch's
            # A delivery whose reading fails here would fail again when GitHub redelivers
            # it: it must not take the process, and the others, down with it.
            answers[seq] = (seq, "error", f"{type(exc).__name__}: {exc}")
    incomings = [incoming for _, incoming, _ in read]
    stored: list[StoreResult | Unstorable | _Failed]
    try:
        stored = list(_store_reconnecting(engine, incomings, config.max_attempts))
    except AWAY as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        stored = [_Failed("away", reason)] * len(read)
    except Exception as exc:  # noqa: BLE001 - answered as the thread writer's failures are
        stored = [_Failed("error", f"{type(exc).__name__}: {exc}")] * len(read)
    for (seq, incoming, malformed), result in zip(read, stored, strict=True):
        if isinstance(result, _Failed):
            answers[seq] = (seq, result.kind, result.reason)
        elif isinstance(result, Unstorable):
            answers[seq] = (seq, "unstorable", str(result))
        else:
            answers[seq] = (seq, "taken", Taken(result, incoming.ingested, malformed))
    return [answers[seq] for seq, _ in batch]


def _store_reconnecting(
    engine: Engine, incomings: list[Incoming], max_attempts: int
) -> list[StoreResult | Unstorable]:
    """:func:`bot.ingest.deliveries.store_deliveries`, once more on a new connection when
    the batch's connection turned out to be closed (the server restarted).

    The child's engine does not ping a connection before each batch. On PostgreSQL that
    round trip per batch took the rate from 0.63, 0.61 and 0.61 of the bare endpoint's to
    0.57, 0.60 and 0.60, p99 from 42, 38 and 47 ms to 52, 53 and 46 (three paired runs of
    bench_ingest, 3 rounds each). A lost connection invalidates the whole pool,
    so the second try connects afresh. It stores each delivery once either way: a batch
    whose commit was lost is not stored, and one whose commit landed before the answer
    was lost finds its ids stored and answers "duplicate"."""
    try:
        return store_deliveries(engine, incomings, max_attempts)
    except OperationalError as exc:
        if not exc.connection_invalidated:
            raise
        log.info("delivery.store_reconnecting", error=str(exc.orig or exc).splitlines()[0])
    return store_deliveries(engine, incomings, max_attempts)


@dataclass(frozen=True)
class _Failed:
    """The batch could not be stored: every delivery of it answers ``kind``."""

    kind: str
    reason: str


def main(argv: list[str]) -> None:
    # Ctrl-C in a terminal reaches the whole process group, and so does a stop by systemd
    # (KillMode=control-group, its default, signals every process of the unit): the service
    # stops this process itself (StoreProcess.close), after the deliveries in hand are
    # stored, and the end of its socket ends it if the service dies. Ended by SIGTERM, it
    # failed the deliveries in flight (503) and the service started another one that no
    # one then stopped: the service took 30 s to exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(int(argv[1]))
    config: StoreConfig = pickle.loads(conn.recv_bytes())  # noqa: S301 - our parent's
    configure_logging(config.log_level, json=config.log_json, secrets=config.secrets)
    serve(conn, config)


if __name__ == "__main__":
    main(sys.argv)
