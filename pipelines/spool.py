"""The spool: raw API responses on disk before anything parses them.

Queue records are handed out once, so the bytes of a response must survive a crash at any point
after they arrive. Each response is written to `tmp/`, fsynced, renamed into `ready/`, and the
folder fsynced: a file in `ready/` is whole, and a crash leaves at most a stray temp file, never a
half file; the loader removes the temp files of dead writers (`clean_temp`) before each load, and
removes a file of `ready/` only after the transaction that loaded it has committed.

File names carry what the loader needs besides the body:
`{pulled_at_ns}.{action}.{sdk_app_id}.{nonce}.{kind}`, where sdk_app_id is the application the
response belongs to and kind is `json` for a response body and `indeterminate` for a pull that
failed in a way that may have lost records (its content is the failure text, so the loss is
counted, not forgotten). Names without an application (`{pulled_at_ns}.{action}.{nonce}.{kind}`:
push callbacks, which do not say their application, and files spooled by older versions) belong to
the first configured application.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

BODY = "json"
INDETERMINATE = "indeterminate"


@dataclasses.dataclass(frozen=True)
class SpoolFile:
    path: Path
    pulled_at_ns: int
    action: str
    kind: str
    sdk_app_id: str | None = None  # None: the first configured application's

    @property
    def batch_id(self) -> str:
        return self.path.stem if self.kind == BODY else self.path.name

    @classmethod
    def parse(cls, path: Path) -> SpoolFile | None:
        parts = path.name.split(".")
        if len(parts) not in (4, 5) or parts[-1] not in (BODY, INDETERMINATE) or not parts[0].isdigit():
            return None
        app = parts[2] if len(parts) == 5 else None
        if app is not None and not app.isdigit():
            return None
        return cls(path, int(parts[0]), parts[1], parts[-1], app)


class Spool:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.ready = self.root / "ready"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.ready.mkdir(parents=True, exist_ok=True)

    def write(self, action: str, data: bytes, *, kind: str = BODY, pulled_at_ns: int | None = None,
              sdk_app_id: str | None = None) -> SpoolFile:
        """Durably store one response (or an indeterminate pull's failure text) of an application."""
        ns = time.time_ns() if pulled_at_ns is None else pulled_at_ns
        app = f"{sdk_app_id}." if sdk_app_id is not None else ""
        name = f"{ns:020d}.{action}.{app}{secrets.token_hex(6)}.{kind}"
        tmp_path = self.tmp / f"{os.getpid()}.{name}"
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        final = self.ready / name
        os.rename(tmp_path, final)
        _fsync_dir(self.ready)
        return SpoolFile(final, ns, action, kind, sdk_app_id)

    def pending(self) -> Iterator[SpoolFile]:
        """Files waiting to be loaded, oldest first. Names that are not ours are left alone."""
        for path in sorted(self.ready.iterdir()):
            spooled = SpoolFile.parse(path)
            if spooled is not None:
                yield spooled

    def remove(self, files: list[SpoolFile]) -> None:
        for spooled in files:
            spooled.path.unlink(missing_ok=True)
        if files:
            _fsync_dir(self.ready)

    def clean_temp(self) -> int:
        """Remove temp files of writers that died before the rename (a temp file's name starts
        with its writer's pid); they never became records. A live writer's file is left alone."""
        removed = 0
        for path in self.tmp.iterdir():
            pid, _, _ = path.name.partition(".")
            if not (pid.isdigit() and process_alive(int(pid))):
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (a pid may have been reused)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
