"""A local stand-in for the Hugging Face Hub, enough for ``hf_hub_download``.

It serves files from memory on 127.0.0.1 (a free port chosen by the system),
in a thread, answering ``HEAD`` and ``GET`` on
``/{repo_id}/resolve/{revision}/{filename}`` with ``Content-Length``, ``ETag``
(the SHA-256 of the file, like the Hub does for LFS files) and
``X-Repo-Commit``, ``Range`` requests with ``206``, and every other read
(``/api/...``) with ``404``. For ``HfApi.create_repo`` / ``upload_folder`` it
also takes ``POST /api/repos/create``, ``/api/validate-yaml`` and
``/api/models/{repo_id}/{preupload,commit}/{revision}`` (every file uploaded
"regular", inline in the commit; any token accepted, none refused with 401).
The revision is ``main`` or a commit id; every change to a repository makes a
new commit, and old commits stay available.

Faults can be injected per file name (:meth:`HubStandIn.fail`): ``"404"``,
``"500"``, ``"drop"`` (headers with the full length, then half the body, then
the connection closes), ``"corrupt"`` (right length and headers, some bytes
flipped) and ``"stall"`` (half the body, then nothing for 30 s: a client to kill
mid-file), each for all requests or only the next ``times`` ones.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_API_WRITE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<action>preupload|commit)/[^/]+$")
FAULTS = ("404", "500", "drop", "corrupt", "stall")


@dataclass
class _Fault:
    mode: str
    times: int | None  # None: every request


@dataclass
class _Repo:
    """A repository with its history: every change makes a new commit, old ones stay."""

    snapshots: dict[str, dict[str, bytes]] = field(default_factory=dict)
    head: str = ""

    @property
    def files(self) -> dict[str, bytes]:
        return self.snapshots.get(self.head, {})

    pending: dict[str, bytes] | None = None

    def change(self, filename: str, data: bytes | None, advance: bool = True) -> str:
        """Change one file; ``advance=False`` collects changes until :meth:`seal`."""
        if self.pending is None:
            self.pending = dict(self.files)
        if data is None:
            self.pending.pop(filename, None)
        else:
            self.pending[filename] = data
        return self.seal() if advance else self.head

    def seal(self) -> str:
        """Make one commit of the collected changes."""
        files = self.pending if self.pending is not None else dict(self.files)
        self.pending = None
        h = hashlib.sha1(b"pipdetect-stand-in" + self.head.encode())
        for name in sorted(files):
            h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        self.head = h.hexdigest()
        self.snapshots[self.head] = files
        return self.head


class HubStandIn:
    """The stand-in server; use as a context manager or call start() / stop()."""

    def __init__(self) -> None:
        self._repos: dict[str, _Repo] = {}
        self._faults: dict[str, _Fault] = {}
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request received, in order."""
        self.commits: list[tuple[str, str, list[str]]] = []
        """(repo_id, commit summary, changed paths) of every commit uploaded."""
        self.body_delay = 0.0
        """Seconds to wait before sending a GET body (to make downloads overlap)."""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content -----------------------------------------------------------
    def put(self, repo_id: str, filename: str, data: bytes) -> str:
        """Add or replace a file; returns the repository's new commit id."""
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo())
            return repo.change(filename, bytes(data))

    def remove(self, repo_id: str, filename: str) -> str:
        """Delete a file; returns the repository's new commit id."""
        with self._lock:
            return self._repos[repo_id].change(filename, None)

    def commit(self, repo_id: str) -> str:
        """The current commit id of ``main``."""
        with self._lock:
            return self._repos[repo_id].head

    def fail(self, filename: str, mode: str, times: int | None = None) -> None:
        """Make requests for ``filename`` fail with ``mode`` (see module docstring)."""
        if mode not in FAULTS:
            raise ValueError(f"unknown fault {mode!r}; one of {FAULTS}")
        with self._lock:
            self._faults[filename] = _Fault(mode, times)

    def heal(self) -> None:
        """Remove all faults."""
        with self._lock:
            self._faults.clear()

    def count(self, method: str, filename: str) -> int:
        """How many ``method`` requests for ``filename`` were received."""
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and p.endswith("/" + filename))

    # -- lifecycle ---------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubStandIn:
        stand_in = self

        class Handler(_Handler):
            hub = stand_in

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler -------------------------------------------------
    def _lookup(self, repo_id: str, revision: str, filename: str):
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                return "RepoNotFound", None, None
            commit = repo.head if revision == "main" else revision
            if commit not in repo.snapshots:
                return "RevisionNotFound", None, None
            return None, commit, repo.snapshots[commit].get(filename)

    def _create(self, repo_id: str) -> None:
        with self._lock:
            self._repos.setdefault(repo_id, _Repo())

    def _commit(self, repo_id: str, changes: dict[str, bytes | None], summary: str) -> str:
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo())
            self.commits.append((repo_id, summary, sorted(changes)))
            for name, data in changes.items():
                repo.change(name, data, advance=False)
            return repo.seal()

    def _take_fault(self, filename: str, method: str) -> str | None:
        with self._lock:
            fault = self._faults.get(filename)
            if fault is None:
                return None
            if fault.mode in ("drop", "corrupt") and method != "GET":
                return None  # these faults concern the body only
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self._faults[filename]
            return fault.mode


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandIn
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_POST(self) -> None:
        """The write endpoints ``HfApi.create_repo`` and ``HfApi.upload_folder`` use."""
        path = urlsplit(self.path).path
        with self.hub._lock:
            self.hub.requests.append(("POST", path))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Authorization") is None:
            self._json(401, {"error": "no token"})
            return
        if path == "/api/repos/create":
            req = json.loads(body or b"{}")
            repo_id = req["name"]
            if req.get("organization"):
                repo_id = f"{req['organization']}/{repo_id}"
            self.hub._create(repo_id)
            self._json(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id})
            return
        if path == "/api/validate-yaml":  # README.md metadata: accepted as it is
            self._json(200, {"errors": [], "warnings": []})
            return
        match = _API_WRITE.match(path)
        if match is None:
            self._error(404)
            return
        repo_id = unquote(match["repo"])
        if match["action"] == "preupload":
            files = json.loads(body)["files"]
            self._json(200, {"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                for f in files
            ]})
            return
        changes: dict[str, bytes | None] = {}
        summary = ""
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                summary = item["value"].get("summary", "")
            elif item["key"] == "file":
                changes[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] == "deletedFile":
                changes[item["value"]["path"]] = None
            else:
                self._json(400, {"error": f"the stand-in cannot do {item['key']!r}"})
                return
        commit = self.hub._commit(repo_id, changes, summary)
        self._json(200, {"commitUrl": f"{self.hub.url}/{repo_id}/commit/{commit}",
                         "commitOid": commit, "pullRequestUrl": None})

    def _json(self, status: int, data: object) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, code: str | None = None, commit: str | None = None) -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, send_body: bool) -> None:
        path = urlsplit(self.path).path
        method = "GET" if send_body else "HEAD"
        with self.hub._lock:
            self.hub.requests.append((method, path))
        match = _RESOLVE.match(path)
        if match is None:  # /api/... and anything else
            self._error(404)
            return
        repo_id, revision = unquote(match["repo"]), unquote(match["rev"])
        filename = unquote(match["file"])
        fault = self.hub._take_fault(filename, method)
        if fault == "500":
            self._error(500)
            return
        code, commit, data = self.hub._lookup(repo_id, revision, filename)
        if code is not None:
            self._error(404, code, commit)
            return
        if fault == "404" or data is None:
            self._error(404, "EntryNotFound", commit)
            return
        assert commit is not None
        start = 0
        status = 200
        rng = _RANGE.match(self.headers.get("Range", ""))
        if rng is not None and send_body:
            start = min(int(rng[1]), len(data))
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not send_body:
            return
        if self.hub.body_delay:
            time.sleep(self.hub.body_delay)
        if fault == "corrupt":
            body = bytes(b ^ 0xFF if i % 7 == 3 else b for i, b in enumerate(body))
        if fault == "stall":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(30)
            return
        if fault == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(body)


HF_VARS = (
    "HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE", "HF_TOKEN", "PIPDETECT_REPO", "PIPDETECT_REVISION",
)
"""Environment variables that change where the Hub client goes; cleared by :func:`use_stand_in`."""


class _NoSleep:
    """Stands in for the ``time`` module inside huggingface_hub: retries without waiting."""

    def sleep(self, seconds: float) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def use_stand_in(monkeypatch: Any, hub: HubStandIn, home: Path) -> None:
    """Point the Hub client at ``hub`` and its cache at ``home`` (HF_HOME) for one test.

    huggingface_hub reads its environment once, at import (``constants.ENDPOINT``
    is whatever ``HF_ENDPOINT`` was then); pipdetect reads ``HF_ENDPOINT`` and the
    cache variables when called, so setting the environment is enough for it.
    Telemetry is switched off (it would fetch an agent registry from
    ``constants.ENDPOINT``), and the client's back-off sleeps (up to 8 s between
    retries of server errors) are skipped: the retries still happen.
    """
    import huggingface_hub.constants as constants
    import huggingface_hub.file_download as file_download
    import huggingface_hub.utils._http as http

    for var in HF_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(http, "time", _NoSleep())
    monkeypatch.setattr(file_download, "time", _NoSleep())
