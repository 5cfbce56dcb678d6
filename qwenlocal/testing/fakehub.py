"""A local stand-in for the Hugging Face hub, for download tests (select it with HF_ENDPOINT).

It answers `/{repo}/resolve/{revision}/{file}` like the hub does for LFS files: HEAD with the
commit, the sha256 as `X-Linked-Etag` and the size; GET with Range support. Faults on demand:
`drop_after` (close the connection after N bytes of a response), `corrupt` (serve wrong bytes),
`status` (answer 404/401 with the hub's `X-Error-Code`), `delay` (seconds per 64 KiB: a slow
server), `ignore_range` (answer a Range request with the whole file and 200, as some CDNs do).
It counts the bytes it sends, so a test can tell a resumed download from a restarted one.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CHUNK = 64 * 1024


@dataclass
class Faults:
    drop_after: int | None = None  # close each response after this many bytes
    corrupt: bool = False
    status: int | None = None  # e.g. 404, 401
    error_code: str | None = None  # RepoNotFound, EntryNotFound, GatedRepo
    delay: float = 0.0
    broken_after_drop: bool = False  # after a drop, answer 503 until the test heals it (a dead link)
    ignore_range: bool = False  # GET sends the whole file (200) whatever the Range asks


@dataclass
class FakeHub:
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    bytes_served: int = 0
    requests: list[str] = field(default_factory=list)
    responses: list[list[int]] = field(default_factory=list)  # [range start, bytes sent] per GET

    def served_since(self, n_responses: int) -> int:
        """Bytes sent by the responses after the first `n_responses`."""
        return sum(sent for _, sent in self.responses[n_responses:])

    def add(self, repo: str, filename: str, data: bytes) -> str:
        self.files[(repo, filename)] = data
        return hashlib.sha256(data).hexdigest()

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                try:
                    self._serve(body=True)
                except (BrokenPipeError, ConnectionResetError):  # the client went away
                    self.close_connection = True

            def _serve(self, body: bool) -> None:
                hub.requests.append(f"{self.command} {self.path} {self.headers.get('Range', '')}")
                match = re.match(
                    r"^/(?:models/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", self.path.split("?")[0]
                )
                faults = hub.faults
                if faults.status or not match or (match[1], match[3]) not in hub.files:
                    status = faults.status or 404
                    # like the hub: 401 (private or missing repo) says RepoNotFound
                    default = "RepoNotFound" if not match or status == 401 else "EntryNotFound"
                    code = faults.error_code or (default if status in (401, 404) else None)
                    if match and not any(repo == match[1] for repo, _ in hub.files) and not faults.status:
                        code = "RepoNotFound"
                    self.send_response(status)
                    if code:
                        self.send_header("X-Error-Code", code)
                        self.send_header("X-Error-Message", code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = hub.files[(match[1], match[3])]
                digest = hashlib.sha256(data).hexdigest()
                if faults.corrupt:
                    data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
                start = 0
                rng = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if rng and body and not faults.ignore_range:
                    start = int(rng[1])
                part = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("X-Linked-Etag", f'"{digest}"')
                self.send_header("ETag", f'"{digest}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(part) if body else len(data)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not body:
                    return
                sent = 0
                record = [start, 0]
                hub.responses.append(record)
                for i in range(0, len(part), CHUNK):
                    chunk = part[i : i + CHUNK]
                    if faults.drop_after is not None and sent + len(chunk) > faults.drop_after:
                        chunk = chunk[: max(faults.drop_after - sent, 0)]
                        self.wfile.write(chunk)
                        hub.bytes_served += len(chunk)
                        record[1] += len(chunk)
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                        if faults.broken_after_drop:
                            faults.status, faults.error_code = 503, "ServiceUnavailable"
                        return
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    hub.bytes_served += len(chunk)
                    record[1] += len(chunk)
                    if faults.delay:
                        time.sleep(faults.delay)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
