"""The parser process. The sending application's files are parsed in a child process, so that a
file that makes a native parser abort (a damaged Parquet page header asks polars for 2**61
bytes), run out of memory or hang costs that file, not the run that reads it.

`ParserProcess` (used by sending_app.py) starts the child for the first file that needs reading,
keeps it for the rest of the call, and starts a new one after a death. They talk over a socket
pair: the parent sends a ReadRequest as JSON; the child answers with where the read starts,
each chunk (a JSON header with the rejected records, then the good rows as Arrow IPC) and where
it ended, or with why the file cannot be read. The child never touches the warehouse.

    python -m pipelines.warehouse.sending_app_reader FD        (started by ParserProcess only)
"""

from __future__ import annotations

import dataclasses
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO

import orjson
import polars as pl

from pipelines.warehouse.sending_app_parse import Chunk, ReadEnd, ReadRequest, ReadStart, UnreadableFile, read_file

# A parse needs a few hundred MiB (one block); past this an allocation fails in the child at
# once, instead of the machine swapping until the out-of-memory killer picks a process.
MEMORY_LIMIT_BYTES = 8 << 30
_CHUNK_FIELDS = ("records", "consumed", "next_record", "fingerprint")


class ParserDied(Exception):
    """The parser process died or stopped answering; the message says how, in one line."""


class ParserProcess:
    """A parser process for the files of one call, started when first needed."""

    def __init__(self, timeout_seconds: float):
        self.timeout_seconds = timeout_seconds
        self._process: subprocess.Popen | None = None
        self._connection: Connection | None = None
        self._errors: IO[bytes] | None = None
        self._errors_from = 0

    def __enter__(self) -> ParserProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def read(self, request: ReadRequest) -> Iterator[ReadStart | Chunk | ReadEnd]:
        """The child's reading of one file. Raises UnreadableFile when the file cannot be read,
        ParserDied when the child died or gave no answer in time (it is then stopped, and the
        next read starts another)."""
        self._send(orjson.dumps(dataclasses.asdict(request)))
        finished = False
        try:
            while True:
                message = orjson.loads(self._receive())
                kind = message.pop("type")
                if kind == "chunk":
                    good = pl.read_ipc(self._receive())
                    yield Chunk(good=good, bad=[tuple(row) for row in message.pop("bad")], **message)
                elif kind == "start":
                    yield ReadStart(**message)
                elif kind == "end":
                    finished = True
                    yield ReadEnd(**message)
                    return
                else:
                    finished = True
                    raise UnreadableFile(message["cause"])
        finally:
            if not finished:  # a death, a timeout, or a caller that stopped reading half-way
                self.stop()

    def close(self) -> None:
        """Let the child finish (it exits when its socket closes); kill it if it does not."""
        if self._process is None:
            return
        assert self._connection is not None
        self._connection.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.stop()

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._release()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        self._errors = tempfile.TemporaryFile(mode="a+b")
        # The child imports this package the way this process did, installed or not.
        root = str(Path(__file__).resolve().parents[2])
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "pipelines.warehouse.sending_app_reader", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=self._errors, stderr=self._errors,
                env=environment,
            )
        self._connection = Connection(ours.detach())

    def _send(self, message: bytes) -> None:
        for attempt in (1, 2):
            if self._process is None:
                self._start()
            assert self._connection is not None and self._errors is not None
            self._errors_from = self._errors.seek(0, os.SEEK_END)
            try:
                self._connection.send_bytes(message)
                return
            except OSError:  # it died while idle: not this file's doing, so once more
                if attempt == 2:
                    raise ParserDied(self._death()) from None
                self.stop()

    def _receive(self) -> bytes:
        assert self._connection is not None
        if not self._connection.poll(self.timeout_seconds):
            self.stop()
            raise ParserDied(f"the parser gave no answer within {self.timeout_seconds:g} s and was stopped")
        try:
            return self._connection.recv_bytes()
        except (EOFError, OSError):
            raise ParserDied(self._death()) from None

    def _death(self) -> str:
        """How the child ended, with the first thing it said about it (an abort's message)."""
        assert self._process is not None
        try:
            status = self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            status = self._process.wait()
        if status < 0:
            how = f"was killed by {signal.Signals(-status).name}"
        else:
            how = f"exited with status {status}"
        said = self._last_words()
        self._release()
        return f"the parser process {how}" + (f": {said}" if said else "")

    def _last_words(self) -> str:
        assert self._errors is not None
        self._errors.seek(self._errors_from)
        lines = [line.strip() for line in self._errors.read(1 << 16).decode("utf-8", "replace").splitlines() if line.strip()]
        if not lines:
            return ""
        return (lines[-1] if lines[0].startswith("Traceback") else lines[0])[:300]

    def _release(self) -> None:
        for resource_ in (self._connection, self._errors):
            if resource_ is not None:
                resource_.close()
        self._process = self._connection = self._errors = None


# -- The child -----------------------------------------------------------------------------------


def main() -> None:
    _confine()
    connection = Connection(int(sys.argv[1]))
    while True:
        try:
            request = ReadRequest(**orjson.loads(connection.recv_bytes()))
        except EOFError:  # the parent closed its end, or died
            return
        _serve(request, connection)


def _confine() -> None:
    """Keep a runaway parse inside this process: cap its address space, and put it first in
    the out-of-memory killer's queue."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = MEMORY_LIMIT_BYTES if hard == resource.RLIM_INFINITY else min(MEMORY_LIMIT_BYTES, hard)
    if soft == resource.RLIM_INFINITY or soft > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        with open("/proc/self/oom_score_adj", "w") as adjust:
            adjust.write("1000")
    except OSError:
        pass


def _serve(request: ReadRequest, connection: Connection) -> None:
    """Answer one request. A failure of the parsing becomes the file's cause; a failure to send
    (the parent is gone) ends this process."""
    try:
        handle = open(request.path, "rb")
    except OSError as exc:
        connection.send_bytes(orjson.dumps({"type": "unreadable", "cause": exc.strerror or str(exc)}))
        return
    with handle:
        events = read_file(request, handle)
        while True:
            try:
                event = next(events)
            except StopIteration:
                return
            except UnreadableFile as exc:
                cause = str(exc)
            except OSError as exc:
                cause = exc.strerror or str(exc)
            except Exception as exc:  # a bug of ours shows as this file's problem, not as a dead run
                first_line = str(exc).splitlines()[0] if str(exc) else ""
                cause = f"the parser failed: {type(exc).__name__}: {first_line}"
            else:
                _send_event(connection, event)
                continue
            connection.send_bytes(orjson.dumps({"type": "unreadable", "cause": cause}))
            return


def _send_event(connection: Connection, event: ReadStart | Chunk | ReadEnd) -> None:
    if isinstance(event, Chunk):
        header = {"type": "chunk", "bad": event.bad, **{name: getattr(event, name) for name in _CHUNK_FIELDS}}
        connection.send_bytes(orjson.dumps(header))
        connection.send_bytes(event.good.write_ipc(None, compression="uncompressed").getvalue())
    else:
        connection.send_bytes(orjson.dumps({"type": "start" if isinstance(event, ReadStart) else "end",
                                            **dataclasses.asdict(event)}))


if __name__ == "__main__":
    main()
