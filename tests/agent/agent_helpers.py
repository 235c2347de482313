"""Test helpers: a local HTTP receiver with scripted answers, event files, subprocess flk.

Polling with a deadline is ``testkit.wait_until`` (one copy for every test package).
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FLK = str(Path(sys.executable).with_name("flk"))


@dataclass
class Answer:
    """One scripted HTTP answer."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


@dataclass
class Seen:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def pcs_id(self) -> str:
        return str(json.loads(self.body)["pcs_id"])


class Receiver:
    """ThreadingHTTPServer on 127.0.0.1:<free port> recording requests.

    Answers come from ``script`` (one per request, in order) then ``default``. With
    ``hold_after = k`` every request after the k-th is recorded and then held (no answer)
    until :meth:`release`.
    """

    def __init__(self, script: Iterable[Answer] = (), default: Answer | None = None) -> None:
        self.script = list(script)
        self.default = default or Answer(200, body={"accepted": True})
        self.seen: list[Seen] = []
        self.hold_after: int | None = None
        self._released = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.seen.append(Seen(self.path, dict(self.headers.items()), body))
                    count = len(receiver.seen)
                    hold = receiver.hold_after is not None and count > receiver.hold_after
                    answer = receiver.script.pop(0) if receiver.script else receiver.default
                if hold:
                    receiver._released.wait(60)
                    return  # the client is gone (killed); drop the connection
                payload = json.dumps(answer.body or {}).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in answer.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/v1/pcs/submit"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)

    def release(self) -> None:
        self.hold_after = None
        self._released.set()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.seen)

    def pcs_ids(self) -> Counter[str]:
        with self._lock:
            return Counter(s.pcs_id for s in self.seen)


def write_csv(path: Path, rows: Iterable[tuple[float, float, float, float]]) -> Path:
    lines = ["timestamp,x,y,z", *(",".join(repr(float(v)) for v in row) for row in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def sample_rows(n: int = 50, seed: int = 0) -> list[tuple[float, float, float, float]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    pts = rng.random((n, 3))
    return [(1000.0 + i, *map(float, pts[i])) for i in range(n)]
