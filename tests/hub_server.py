"""A loopback Hub-compatible HTTP server for tests: the real ``huggingface_hub`` client talks to it, nothing is patched.

It covers what pushing (create repo, branches, preupload, LFS batch + PUT, NDJSON commit) and downloading
(HEAD/GET ``resolve``, model info, tree, commits, refs) need, per the protocol facts in ``shared/FACTS.md``.
Standard library only, threaded, on 127.0.0.1 and a free port. Point a client at it with ``HF_ENDPOINT=server.url``
(read when ``huggingface_hub`` is imported), ``HF_HUB_DISABLE_XET=1`` and a fresh ``HF_HOME``.

- ``token``: when set, writes need ``Authorization: Bearer <token>`` (401 otherwise), and so do reads of private repos.
- ``fail_on``: a route name ("preupload", "lfs_batch", "lfs_upload", "commit") whose next request gets its connection dropped with
  no answer, to simulate a network failure in the middle of a push.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx_data", ".pt", ".npy", ".msgpack", ".h5")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubServer:
    def __init__(self, token: str | None = None):
        self.token = token
        self.fail_on: str | None = None
        self.fail_always = False  # True: every request of that route fails (the server stays down for it)
        self.repos: dict[str, dict] = {}  # repo_id -> {"private", "branches": {name: oid}, "commits": {oid: {...}}}
        self.lfs: dict[str, bytes] = {}  # sha256 -> content
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- repo state ------------------------------------------------------------------------------------------
    def files(self, repo_id: str, rev: str = "main") -> dict[str, dict]:
        """``{path: {"data": bytes, "lfs": bool}}`` at a branch or commit (empty if the repo or rev is unknown)."""
        repo = self.repos.get(repo_id)
        oid = repo and (repo["branches"].get(rev) or (rev if rev in repo["commits"] else None))
        return dict(repo["commits"][oid]["files"]) if oid else {}

    def _commit(self, repo_id: str, branch: str, files: dict, message: str) -> str:
        repo = self.repos[repo_id]
        parent = repo["branches"].get(branch)
        oid = hashlib.sha1(f"{repo_id}{parent}{message}{len(repo['commits'])}".encode()).hexdigest()
        repo["commits"][oid] = {"files": files, "parent": parent, "message": message}
        repo["branches"][branch] = oid
        return oid


def _make_handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        # -- plumbing --------------------------------------------------------------------------------------
        def _send(self, status: int, body=b"", headers: dict | None = None, error_code: str | None = None):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            if not isinstance(body, bytes):
                self.send_header("Content-Type", "application/json")
            if error_code:
                self.send_header("X-Error-Code", error_code)
            if status >= 400 and isinstance(body, dict) and "error" in body:
                self.send_header("X-Error-Message", body["error"])
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _authorized(self) -> bool:
            return hub.token is None or self.headers.get("Authorization") == f"Bearer {hub.token}"

        def _dropped(self, route: str) -> bool:
            """Simulated network failure: read the request, then close the socket without an answer."""
            if hub.fail_on != route:
                return False
            if not hub.fail_always:
                hub.fail_on = None
            self._body()
            self.close_connection = True
            return True

        def _route(self):
            url = urlsplit(self.path)
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            with hub.lock:
                hub.requests.append((self.command, url.path))
            return parts, query

        def do_HEAD(self):
            self.do_GET()

        # -- reads -----------------------------------------------------------------------------------------
        def do_GET(self):
            parts, query = self._route()
            if len(parts) >= 5 and parts[2] == "resolve":  # /{ns}/{name}/resolve/{rev}/{path...}
                return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                repo_id, rest = f"{parts[2]}/{parts[3]}", parts[4:]
                repo = self._readable_repo(repo_id)
                if repo is None:
                    return
                if not rest or rest[0] == "revision":  # model_info
                    rev = rest[1] if len(rest) > 1 else "main"
                    return self._model_info(repo_id, rev)
                if rest[0] == "tree":  # list_repo_tree
                    return self._tree(repo_id, rest[1], "/".join(rest[2:]), query.get("recursive") in ("True", "true", "1"))
                if rest[0] == "commits":
                    return self._commits(repo_id, rest[1] if len(rest) > 1 else "main")
                if rest[0] == "refs":
                    branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in repo["branches"].items()]
                    return self._send(200, {"branches": branches, "tags": [], "converts": []})
            return self._send(404, {"error": f"no route for GET {self.path}"})

        def _readable_repo(self, repo_id: str):
            repo = hub.repos.get(repo_id)
            if repo is None or (repo["private"] and not self._authorized()):
                self._send(401 if repo else 404, {"error": "Repository not found"}, error_code="RepoNotFound")
                return None
            return repo

        def _oid(self, repo, rev):
            return repo["branches"].get(rev) or (rev if rev in repo["commits"] else None)

        def _resolve(self, repo_id, rev, path):
            repo = self._readable_repo(repo_id)
            if repo is None:
                return
            oid = self._oid(repo, rev)
            if oid is None:
                return self._send(404, {"error": f"Invalid rev id: {rev}"}, error_code="RevisionNotFound")
            entry = repo["commits"][oid]["files"].get(path)
            if entry is None:
                return self._send(404, {"error": f"Entry not found: {path}"}, error_code="EntryNotFound",
                                  headers={"X-Repo-Commit": oid})
            data = entry["data"]
            headers = {"X-Repo-Commit": oid, "ETag": f'"{git_blob_sha1(data)}"'}
            if entry["lfs"]:
                sha = hashlib.sha256(data).hexdigest()
                headers.update({"ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": len(data)})
            self._send(200, data, headers)

        def _model_info(self, repo_id, rev):
            repo = hub.repos[repo_id]
            oid = self._oid(repo, rev)
            if oid is None:
                return self._send(404, {"error": f"Invalid rev id: {rev}"}, error_code="RevisionNotFound")
            siblings = [{"rfilename": p} for p in sorted(repo["commits"][oid]["files"])]
            self._send(200, {"id": repo_id, "modelId": repo_id, "sha": oid, "private": repo["private"],
                             "siblings": siblings, "tags": [], "downloads": 0, "likes": 0})

        def _tree(self, repo_id, rev, prefix, recursive):
            repo = hub.repos[repo_id]
            oid = self._oid(repo, rev)
            if oid is None:
                return self._send(404, {"error": f"Invalid rev id: {rev}"}, error_code="RevisionNotFound")
            files = repo["commits"][oid]["files"]
            base = f"{prefix}/" if prefix else ""
            under = {p: e for p, e in files.items() if p.startswith(base)}
            if prefix and not under:
                return self._send(404, {"error": f"Entry not found: {prefix}"}, error_code="EntryNotFound")
            out, folders = [], set()
            for path, entry in sorted(under.items()):
                rel = path[len(base):].split("/")
                for depth in range(1, len(rel) if recursive else min(2, len(rel))):
                    folders.add(base + "/".join(rel[:depth]))
                if len(rel) == 1 or recursive:
                    item = {"type": "file", "path": path, "size": len(entry["data"]), "oid": git_blob_sha1(entry["data"])}
                    if entry["lfs"]:
                        item["lfs"] = {"oid": hashlib.sha256(entry["data"]).hexdigest(), "size": len(entry["data"]),
                                       "pointerSize": 134}
                    out.append(item)
            out += [{"type": "directory", "path": f, "oid": "0" * 40} for f in sorted(folders)]
            self._send(200, out)

        def _commits(self, repo_id, rev):
            repo, out = hub.repos[repo_id], []
            oid = self._oid(repo, rev)
            while oid:
                c = repo["commits"][oid]
                out.append({"id": oid, "title": c["message"], "message": "", "authors": [],
                            "date": "2025-01-01T00:00:00.000Z"})
                oid = c["parent"]
            self._send(200, out)

        # -- writes ----------------------------------------------------------------------------------------
        def do_POST(self):
            parts, query = self._route()
            if parts == ["api", "validate-yaml"]:
                self._body()
                return self._send(200, {"errors": [], "warnings": []})
            if not self._authorized():
                self._body()
                return self._send(401, {"error": "Invalid credentials in Authorization header"})
            if parts == ["api", "repos", "create"]:
                return self._create_repo(json.loads(self._body()))
            if len(parts) >= 4 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
                if self._dropped("lfs_batch"):
                    return
                return self._lfs_batch(json.loads(self._body()))
            if parts[:2] == ["api", "models"] and len(parts) >= 6:
                repo_id, action, rev = f"{parts[2]}/{parts[3]}", parts[4], parts[5]
                if repo_id not in hub.repos:
                    self._body()
                    return self._send(404, {"error": "Repository not found"}, error_code="RepoNotFound")
                if action == "preupload":
                    if self._dropped("preupload"):
                        return
                    files = json.loads(self._body())["files"]
                    modes = [{"path": f["path"], "shouldIgnore": False,
                              "uploadMode": "lfs" if self._is_lfs(f) else "regular"} for f in files]
                    return self._send(200, {"files": modes})
                if action == "branch":
                    return self._create_branch(repo_id, rev, json.loads(self._body() or b"{}"))
                if action == "commit":
                    if self._dropped("commit"):
                        return
                    return self._commit(repo_id, rev, self._body())
            self._body()
            return self._send(404, {"error": f"no route for POST {self.path}"})

        def do_PUT(self):
            parts, _ = self._route()
            if len(parts) == 2 and parts[0] == "lfs-upload":
                if self._dropped("lfs_upload"):
                    return None
                data = self._body()
                if hashlib.sha256(data).hexdigest() != parts[1]:
                    return self._send(400, {"error": "sha256 mismatch"})
                with hub.lock:
                    hub.lfs[parts[1]] = data
                return self._send(200, {})
            self._body()
            return self._send(404, {"error": f"no route for PUT {self.path}"})

        @staticmethod
        def _is_lfs(f) -> bool:
            return f["path"].endswith(LFS_SUFFIXES) or b"\0" in base64.b64decode(f["sample"])

        def _create_repo(self, body):
            repo_id = f"{body.get('organization') or 'user'}/{body['name']}"
            url = f"{hub.url}/{repo_id}"
            with hub.lock:
                if repo_id in hub.repos:
                    return self._send(409, {"error": "You already created this model repo", "url": url})
                # huggingface_hub 0.x sends "private": bool, later versions "visibility": "private" | "public"
                private = bool(body.get("private")) or body.get("visibility") == "private"
                hub.repos[repo_id] = {"private": private, "branches": {}, "commits": {}}
                gitattributes = {"data": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n", "lfs": False}
                hub._commit(repo_id, "main", {".gitattributes": gitattributes}, "initial commit")
            self._send(200, {"url": url, "name": repo_id, "id": repo_id})

        def _create_branch(self, repo_id, branch, body):
            with hub.lock:
                repo = hub.repos[repo_id]
                if branch in repo["branches"]:
                    return self._send(409, {"error": f"Reference already exists: refs/heads/{branch}"})
                start = self._oid(repo, body.get("startingPoint") or "main")
                repo["branches"][branch] = start
            self._send(200, {})

        def _lfs_batch(self, body):
            objects = []
            for obj in body["objects"]:
                item = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in hub.lfs:  # no "actions" means "already stored"
                    item["actions"] = {"upload": {"href": f"{hub.url}/lfs-upload/{obj['oid']}"}}
                objects.append(item)
            self._send(200, {"transfer": "basic", "objects": objects})

        def _commit(self, repo_id, rev, body):
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            with hub.lock:
                repo = hub.repos[repo_id]
                if rev not in repo["branches"]:
                    return self._send(404, {"error": f"Invalid rev id: {rev}"}, error_code="RevisionNotFound")
                files = dict(repo["commits"][repo["branches"][rev]]["files"])
                message = "commit"
                for line in lines:
                    key, value = line["key"], line["value"]
                    if key == "header":
                        message = value["summary"]
                    elif key == "file":
                        files[value["path"]] = {"data": base64.b64decode(value["content"]), "lfs": False}
                    elif key == "lfsFile":
                        if value["oid"] not in hub.lfs:
                            return self._send(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                        files[value["path"]] = {"data": hub.lfs[value["oid"]], "lfs": True}
                    elif key == "deletedFile":
                        files.pop(value["path"], None)
                    elif key == "deletedFolder":
                        files = {p: e for p, e in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
                oid = hub._commit(repo_id, rev, files, message)
            self._send(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                             "success": True})

    return Handler
