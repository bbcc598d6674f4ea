"""A small Hugging Face Hub on 127.0.0.1: the part of its HTTP API that huggingface_hub uses.

Routes, as huggingface_hub 2.x calls them (``HfApi.model_info``, ``hf_hub_download``):

* ``GET /api/models/ORG/NAME[/revision/REV]``: the repository at a revision
  (``sha``, ``siblings``, ``gated``); unknown repositories and revisions get
  404 with ``X-Error-Code: RepoNotFound`` / ``RevisionNotFound``.
* ``HEAD|GET /ORG/NAME/resolve/REV/PATH``: a small file answers 200 with its
  ETag (the git blob id), ``X-Repo-Commit`` and ``Content-Length``; a
  ``.safetensors`` file answers 302 to a second server (another origin, as a
  CDN is) with ``X-Linked-Etag`` (its SHA-256), ``X-Linked-Size`` and
  ``X-Repo-Commit``; a missing file gets 404 ``EntryNotFound``. A gated
  repository answers 401 ``X-Error-Code: GatedRepo`` to file requests without
  its token (``Authorization: Bearer ...``), as the Hub does.
* the "CDN" serves ``GET|HEAD /lfs/SHA256`` (with ``Range``).

Every request is logged (method, path), so tests can assert which files were
fetched and how often.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path


def blob_bytes(content: bytes | Path) -> bytes:
    return content.read_bytes() if isinstance(content, Path) else content


@dataclass
class _Blob:
    content: bytes | Path
    size: int
    sha256: str
    git_sha1: str


@dataclass
class Repo:
    """One model repository: commits (sha -> path -> blob) and refs (branch -> sha)."""

    commits: dict[str, dict[str, _Blob]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated_token: str | None = None  # when set, files need "Authorization: Bearer <token>"


class FakeHub:
    """Two loopback servers: the Hub API and the "CDN" its LFS files redirect to."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self._blobs: dict[str, _Blob] = {}
        self._lock = threading.Lock()
        self._api = _Server(self, cdn=False)
        self._cdn = _Server(self, cdn=True)
        self._threads = [
            threading.Thread(target=s.serve_forever, daemon=True) for s in (self._api, self._cdn)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._api.server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def close(self) -> None:
        for server in (self._api, self._cdn):
            server.shutdown()
            server.server_close()

    def add_commit(
        self,
        repo_id: str,
        files: dict[str, bytes | Path],
        *,
        branch: str | None = "main",
        gated_token: str | None = None,
    ) -> str:
        """Add a commit holding ``files`` (path -> bytes or a file to stream) and move
        ``branch`` to it; returns its SHA."""
        repo = self.repos.setdefault(repo_id, Repo())
        if gated_token is not None:
            repo.gated_token = gated_token
        blobs = {}
        tree = hashlib.sha1(f"{repo_id} commit {len(repo.commits)}".encode())
        for path, content in sorted(files.items()):
            data = blob_bytes(content)
            blob = _Blob(
                content=content,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                git_sha1=hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
            )
            blobs[path] = blob
            self._blobs[blob.sha256] = blob
            tree.update(f"{path} {blob.git_sha1}\n".encode())
        sha = tree.hexdigest()
        repo.commits[sha] = blobs
        if branch:
            repo.refs[branch] = sha
        return sha

    def count(self, path_suffix: str, method: str | None = None) -> int:
        """How many requests ended with ``path_suffix`` (and used ``method``)."""
        with self._lock:
            return sum(
                1
                for m, p in self.requests
                if p.endswith(path_suffix) and (method is None or m == method)
            )

    def files_fetched(self, repo_id: str) -> set[str]:
        """The repository's file paths that were asked for (HEAD or GET) since the last clear."""
        prefix = f"/{repo_id}/resolve/"
        with self._lock:
            found = set()
            for _, path in self.requests:
                if path.startswith(prefix):
                    found.add(path[len(prefix) :].split("/", 1)[1])
            return found

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- answering -------------------------------------------------------

    def log(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def revision(self, repo: Repo, rev: str) -> str | None:
        if rev in repo.commits:
            return rev
        return repo.refs.get(rev)

    def blob(self, sha256: str) -> _Blob | None:
        return self._blobs.get(sha256)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: FakeHub, *, cdn: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub = hub
        self.cdn = cdn


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(head=False)

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        head: bool = False,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, head: bool, **extra: str) -> None:
        body = json.dumps({"error": message}).encode()
        headers = {"Content-Type": "application/json", "X-Error-Code": code, **extra}
        self._send(status, body, headers, head)

    def _answer(self, head: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        hub = self.server.hub
        hub.log("HEAD" if head else "GET", urllib.parse.unquote(path))
        if self.server.cdn:
            self._cdn(path, head)
            return
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id = "/".join(parts[2:4])
            rev = "main"
            if len(parts) >= 6 and parts[4] == "revision":
                rev = urllib.parse.unquote("/".join(parts[5:]))
            self._model_info(repo_id, rev, head)
            return
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id = "/".join(parts[:2])
            rev = urllib.parse.unquote(parts[3])
            self._resolve(repo_id, rev, urllib.parse.unquote("/".join(parts[4:])), head)
            return
        self._error(404, "NotFound", f"no route {path}", head)

    def _model_info(self, repo_id: str, rev: str, head: bool) -> None:
        hub = self.server.hub
        repo = hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found", head)
            return
        sha = hub.revision(repo, rev)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
            return
        files = repo.commits[sha]
        body = json.dumps(
            {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0],
                "sha": sha,
                "private": False,
                "gated": "manual" if repo.gated_token else False,
                "disabled": False,
                "library_name": "sentence-transformers",
                "tags": ["sentence-transformers", "safetensors"],
                "siblings": [{"rfilename": name} for name in sorted(files)],
                "lastModified": "2026-01-01T00:00:00.000Z",
            }
        ).encode()
        self._send(200, body, {"Content-Type": "application/json"}, head)

    def _resolve(self, repo_id: str, rev: str, name: str, head: bool) -> None:
        hub = self.server.hub
        repo = hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found", head)
            return
        token = self.headers.get("Authorization")
        if repo.gated_token is not None and token != f"Bearer {repo.gated_token}":
            self._error(
                401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must have access to it "
                "and be authenticated to access it. Please log in.",
                head,
            )
            return
        sha = hub.revision(repo, rev)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
            return
        blob = repo.commits[sha].get(name)
        if blob is None:
            self._error(
                404, "EntryNotFound", f"{name} does not exist", head, **{"X-Repo-Commit": sha}
            )
            return
        if name.endswith(".safetensors"):  # an LFS file: redirect to the CDN
            headers = {
                "X-Repo-Commit": sha,
                "X-Linked-Etag": f'"{blob.sha256}"',
                "X-Linked-Size": str(blob.size),
                "ETag": f'W/"{blob.git_sha1}"',
                "Location": f"{hub.cdn}/lfs/{blob.sha256}",
            }
            self._send(302, b"", headers, head)
            return
        data = blob_bytes(blob.content)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{blob.git_sha1}"'}
        self._send(200, data, {**headers, "Content-Type": "application/octet-stream"}, head)

    def _cdn(self, path: str, head: bool) -> None:
        parts = path.strip("/").split("/")
        blob = self.server.hub.blob(parts[1]) if parts[:1] == ["lfs"] and len(parts) == 2 else None
        if blob is None:
            self._send(404, b"no such object", head=head)
            return
        data = blob_bytes(blob.content)
        start = 0
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes=") and wanted[6:].split("-")[0].isdigit():
            start = min(int(wanted[6:].split("-")[0]), len(data))
        headers = {"ETag": f'"{blob.sha256}"', "Content-Type": "application/octet-stream"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._send(206, data[start:], headers, head)
        else:
            self._send(200, data, headers, head)
