"""Remote transport: a client of `radsynth serve` and RemoteRunner, which feeds JobHandles from it.

- ``RemoteClient`` (sync, httpx + websockets' sync client) for the connection dialog, scripts and
  tests; ``AsyncRemoteClient`` (httpx.AsyncClient + websockets' asyncio client) for the runner.
- ``RemoteRunner(url, token)`` has the runner interface of ``LocalRunner`` (``.transport``,
  ``.start(handle)``), so every panel works unchanged against a remote box. It runs one asyncio
  loop on a dedicated thread (rather than on the GUI loop through qasync) so that a slow network
  never blocks drawing and the runner works the same in a QApplication, a test or a script; it
  reaches the GUI only through ``JobHandle.post`` / ``mark_*``, which are thread-safe.
- A lost connection marks the job "reconnecting", retries with exponential backoff and resumes
  the event stream after the last sequence number seen: events at or below it are dropped, so
  none is lost or shown twice. ``reattach()`` rebuilds handles for jobs still running on the
  server (after the app was closed and reopened); ``reattach_from(summaries)`` does the same from a
  job list fetched earlier (off the GUI thread), so the GUI thread never waits on the network.
- With ``local_dir`` set, the files a finished job lists in ``result["files"]`` (e.g. the sample
  job's NPZ / PNGs) are downloaded into ``local_dir/<job id>/`` before ``Done`` is posted, and the
  result names the local copies (the server paths stay in ``result["server_files"]``): a panel
  reads a remote job's output exactly as it reads a local one's.
- The token is kept in a file only the user can read (``save_token`` / ``load_token``), never in
  QSettings: there is no keyring package among the dependencies, and a 0600 file in the user
  config dir is what ssh and most CLIs do.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

from app.engine import jobs as J

#: largest WebSocket frame accepted (a frame may batch many events, images included)
MAX_FRAME = 64 << 20
# WebSocket compression is off (compression=None): deflating base64 image frames costs more CPU than
# it saves on a LAN or loopback; over a slow link, compress the SSH tunnel instead (ssh -C).


class RemoteError(Exception):
    """The server answered with an error; ``status`` is the HTTP status (0: unreachable)."""

    def __init__(self, message: str, status: int = 0, detail=None):
        super().__init__(message)
        self.status = status
        self.detail = detail


class AuthError(RemoteError):
    pass


def normalise_url(url: str) -> str:
    url = (url or "").strip().rstrip("/")
    if not url:
        raise ValueError("no server URL given")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"server URL {url!r} is not http(s)://host:port")
    return url


def transport_name(url: str) -> str:
    parts = urlsplit(normalise_url(url))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"remote: {parts.hostname}:{port}"


def _ws_url(base: str, job_id: str, after: int) -> str:
    scheme = "wss" if base.startswith("https") else "ws"
    return f"{scheme}{base[base.index(':'):]}/api/jobs/{job_id}/events?after={int(after)}"


def _ssl_context(base: str, verify: bool | str) -> ssl.SSLContext | None:
    if not base.startswith("https"):
        return None
    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
        message = body.get("message") or body.get("detail") or resp.text
        detail = body.get("detail")
    except ValueError:
        message, detail = resp.text or resp.reason_phrase, None
    if not isinstance(message, str):
        message = json.dumps(message)
    cls = AuthError if resp.status_code == 401 else RemoteError
    if resp.status_code == 401:
        message = "the server refused the token (401): check the token of this connection"
    raise cls(message, resp.status_code, detail)


def _frames_to_items(raw: str | bytes) -> list[tuple[str, object]]:
    """A server frame as items: ("state", str), ("event", (seq, Event)), ("end", state)."""
    msg = json.loads(raw)
    t = msg.get("type")
    if t == "events":
        return [("event", (int(e["seq"]), J.event_from_dict(e["event"]))) for e in msg["events"]]
    if t == "state":
        return [("state", msg["state"])]
    if t == "end":
        return [("end", msg.get("state"))]
    return []


# ----------------------------------------------------------------------------------------------
# clients
# ----------------------------------------------------------------------------------------------


class RemoteClient:
    """A synchronous client of the server's REST API and event stream."""

    def __init__(self, url: str, token: str, *, timeout: float = 15.0, verify: bool | str = True):
        self.url = normalise_url(url)
        self.token = token
        self._ssl = _ssl_context(self.url, verify)
        self._http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"},
                                  timeout=timeout, verify=self._ssl if self._ssl is not None else True)

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _request(self, method: str, path: str, **kw) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise RemoteError(f"cannot reach the server at {self.url}: {exc}") from exc
        _raise_for(resp)
        return resp

    def info(self) -> dict:
        return self._request("GET", "/api/info").json()

    def datasets(self, path: str | None = None, *, offset: int = 0, limit: int | None = None) -> dict:
        """Registered datasets (a page: ``offset``, ``limit``; ``total`` counts them all) and files under the data
        roots; with ``path``, the files of that folder."""
        params = {k: v for k, v in (("path", path), ("offset", offset or None), ("limit", limit)) if v is not None}
        return self._request("GET", "/api/datasets", params=params or None).json()

    def upload(self, archive: str | Path, name: str, *, ingest: bool = False, options: dict | None = None) -> dict:
        """Send a .zip / .tar(.gz) archive (streamed from disk); optionally ingest it on the server."""
        archive = Path(archive)
        params = {"name": name, "ingest": str(bool(ingest)).lower()}
        if options:
            params["options"] = json.dumps(options)
        with open(archive, "rb") as f:
            return self._request("POST", "/api/datasets/upload", params=params, content=f,
                                 headers={"Content-Length": str(archive.stat().st_size),
                                          "Content-Type": "application/octet-stream"}).json()

    def submit(self, spec: J.Spec | dict, job_id: str | None = None) -> str:
        data = spec.model_dump(mode="json") if isinstance(spec, J.Spec) else spec
        params = {"job_id": job_id} if job_id else None
        return self._request("POST", "/api/jobs", json=data, params=params).json()["id"]

    def jobs(self) -> list[dict]:
        return self._request("GET", "/api/jobs").json()["jobs"]

    def job(self, job_id: str) -> dict:
        return self._request("GET", f"/api/jobs/{job_id}").json()

    def cancel(self, job_id: str) -> dict:
        return self._request("POST", f"/api/jobs/{job_id}/cancel").json()

    def artifacts(self, job_id: str) -> list[dict]:
        return self._request("GET", f"/api/jobs/{job_id}/artifacts").json()["artifacts"]

    def delete_job(self, job_id: str) -> dict:
        """Delete a finished job and its folder on the server (409 while it is queued or running)."""
        return self._request("DELETE", f"/api/jobs/{job_id}").json()

    def delete_dataset(self, name: str) -> dict:
        """Delete a registered dataset on the server (409 while a queued or running job names it)."""
        return self._request("DELETE", f"/api/datasets/{name}").json()

    def delete_run(self, run_id: str) -> dict:
        """Delete a training run (its checkpoints) on the server (409 while it trains or a job uses it)."""
        return self._request("DELETE", f"/api/runs/{run_id}").json()

    def delete_upload(self, name: str) -> dict:
        """Delete an uploaded folder on the server (409 while a queued or running job reads it)."""
        return self._request("DELETE", f"/api/uploads/{name}").json()

    def runs(self) -> list[dict]:
        """Training runs on the server, oldest first, each with ``checkpoints`` (server paths)."""
        return self._request("GET", "/api/runs").json()["runs"]

    def download(self, path: str, dest: str | Path) -> Path:
        """Download a server file (a path from an Artifact event) to ``dest`` (a file or a folder).

        A folder artifact (e.g. a checkpoint folder) is downloaded file by file into
        ``dest/<folder name>/``; the local folder is returned.
        """
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / Path(path).name
        try:
            with self._http.stream("GET", "/api/artifacts", params={"path": path}) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _raise_for(resp)
                if resp.headers.get("x-radsynth-folder") == "1":
                    resp.read()
                    listing = resp.json()
                    dest.mkdir(parents=True, exist_ok=True)
                    for f in listing["files"]:
                        if not f["dir"]:
                            target = (dest / f["path"]).resolve()
                            if not target.is_relative_to(dest.resolve()):  # never trust a listing
                                raise RemoteError(f"the server listed a file outside the folder: {f['path']!r}")
                            target.parent.mkdir(parents=True, exist_ok=True)
                            self.download(f"{listing['path']}/{f['path']}", target)
                    return dest
                tmp = dest.with_name(dest.name + ".part")
                with open(tmp, "wb") as f:
                    for chunk in resp.iter_bytes(1 << 20):
                        f.write(chunk)
                tmp.replace(dest)
        except httpx.TransportError as exc:
            raise RemoteError(f"cannot reach the server at {self.url}: {exc}") from exc
        return dest

    # -- reading a study (what a reader token may do; an admin token names the reader) --------------

    def reading_cases(self, study: str, reader: str | None = None) -> dict:
        """A reader's cases in their order: ``mode``, ``time_limit_s``, ``n_cases``, ``n_answered``,
        ``first_unanswered`` and ``cases`` (``index``, ``case_id``, the reader's ``answer`` or None)."""
        return self._request("GET", f"/api/reading/{quote(study, safe='')}/cases",
                             params={"reader": reader} if reader else None).json()

    def reading_image(self, study: str, case_id: str, reader: str | None = None):
        """The blinded uint8 pixels (K, S, S) of one case (K = 2 in a 2afc study)."""
        import io

        import numpy as np

        resp = self._request("GET", f"/api/reading/{quote(study, safe='')}/cases/{quote(case_id, safe='')}/image",
                             params={"reader": reader} if reader else None)
        return np.load(io.BytesIO(resp.content), allow_pickle=False)

    def post_answer(self, study: str, case_id: str, *, answer: str | None = None, confidence: int | None = None,
                    plausibility: int | None = None, comment: str | None = None, seconds: float = 0.0,
                    over_time: bool = False, reader: str | None = None) -> dict:
        """Record (or overwrite) the reader's answer to one case, as ReadingSession.record does locally."""
        body = {"case_id": case_id, "answer": answer, "confidence": confidence, "plausibility": plausibility,
                "comment": comment, "seconds": float(seconds), "over_time": bool(over_time)}
        return self._request("POST", f"/api/reading/{quote(study, safe='')}/answers",
                             params={"reader": reader} if reader else None, json=body).json()

    def events(self, job_id: str, after: int = 0, timeout: float | None = None) -> Iterator[tuple[int, J.Event]]:
        """(seq, event) of a job from ``after`` on, following it live until its terminal event."""
        from websockets.exceptions import ConnectionClosedOK
        from websockets.sync.client import connect

        with connect(_ws_url(self.url, job_id, after), additional_headers={"Authorization": f"Bearer {self.token}"},
                     max_size=MAX_FRAME, ssl=self._ssl, open_timeout=timeout or 15, compression=None) as ws:
            while True:
                try:
                    raw = ws.recv(timeout)
                except ConnectionClosedOK:
                    return
                for what, value in _frames_to_items(raw):
                    if what == "event":
                        yield value
                        if isinstance(value[1], J.TERMINAL):
                            return
                    elif what == "end":
                        return


class AsyncRemoteClient:
    """The asyncio client the runner uses (httpx.AsyncClient + websockets' asyncio client)."""

    def __init__(self, url: str, token: str, *, timeout: float = 15.0, verify: bool | str = True):
        self.url = normalise_url(url)
        self.token = token
        self._ssl = _ssl_context(self.url, verify)
        self._http = httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {token}"},
                                       timeout=timeout, verify=self._ssl if self._ssl is not None else True)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kw) -> httpx.Response:
        resp = await self._http.request(method, path, **kw)  # transport errors propagate (retried by callers)
        _raise_for(resp)
        return resp

    async def submit(self, spec: J.Spec, job_id: str | None = None) -> str:
        params = {"job_id": job_id} if job_id else None
        resp = await self._request("POST", "/api/jobs", json=spec.model_dump(mode="json"), params=params)
        return resp.json()["id"]

    async def job(self, job_id: str) -> dict:
        return (await self._request("GET", f"/api/jobs/{job_id}")).json()

    async def cancel(self, job_id: str) -> dict:
        return (await self._request("POST", f"/api/jobs/{job_id}/cancel")).json()

    async def stream(self, job_id: str, after: int = 0) -> AsyncIterator[tuple[str, object]]:
        """Items of one WebSocket connection: ("state", s), ("event", (seq, ev)), ("end", s)."""
        from websockets.asyncio.client import connect

        async with connect(_ws_url(self.url, job_id, after), additional_headers={"Authorization": f"Bearer {self.token}"},
                           max_size=MAX_FRAME, ssl=self._ssl, open_timeout=15, ping_interval=20,
                           ping_timeout=20, compression=None) as ws:
            async for raw in ws:
                for item in _frames_to_items(raw):
                    yield item


# ----------------------------------------------------------------------------------------------
# the runner
# ----------------------------------------------------------------------------------------------


class RemoteRunner:
    """Runs jobs on a remote server and streams their events into JobHandles.

    ``on_event(job_id, seq, event)``, if given, sees every event as it arrives (on the runner's
    thread), with its server sequence number (benchmarks and tests use it; the GUI does not).
    """

    def __init__(self, url: str, token: str, *, verify: bool | str = True, max_reconnect_s: float = 3600.0,
                 backoff_s: tuple[float, float] = (0.25, 8.0),
                 on_event: Callable[[str, int, J.Event], None] | None = None,
                 local_dir: str | Path | None = None, fetch_max_files: int = 2000):
        self.url = normalise_url(url)
        self.local_dir = Path(local_dir) if local_dir is not None else None
        self.fetch_max_files = int(fetch_max_files)
        self.token = token
        self.verify = verify
        self.transport = transport_name(self.url)
        self.max_reconnect_s = float(max_reconnect_s)
        self.backoff_s = backoff_s
        self.on_event = on_event
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: AsyncRemoteClient | None = None
        self._futures: dict[str, concurrent.futures.Future] = {}
        self._lock = threading.Lock()

    # -- the loop thread -------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run():
                    asyncio.set_event_loop(loop)
                    self._client = AsyncRemoteClient(self.url, self.token, verify=self.verify)
                    ready.set()
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="radsynth-remote", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def _submit(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())

    # -- runner interface ------------------------------------------------------------------
    def start(self, handle) -> None:
        """Submit ``handle.spec`` to the server (as job ``handle.job_id``) and follow its events."""
        self._follow(handle, submit=True)

    def attach(self, handle) -> None:
        """Follow a job already on the server (``handle.job_id``) from its first event."""
        self._follow(handle, submit=False)

    def _follow(self, handle, submit: bool) -> None:
        handle.transport = self.transport
        # artifacts of a remote job name paths on the server: the Jobs dock fetches one on request
        handle.fetch_artifact = lambda path, jid=handle.job_id: self.fetch_artifact(jid, path)
        handle.set_cancel_hook(lambda jid=handle.job_id: self._submit(self._cancel(jid)))
        fut = self._submit(self._run(handle, submit))
        self._futures[handle.job_id] = fut
        fut.add_done_callback(lambda _f, jid=handle.job_id: self._futures.pop(jid, None))

    def running(self) -> list[str]:
        """Jobs this runner is still streaming."""
        return [jid for jid, f in self._futures.items() if not f.done()]

    def wait_all(self, timeout_ms: int = 30000) -> bool:
        """Wait until every followed job has delivered its terminal event (or was detached)."""
        futures = list(self._futures.values())
        done, pending = concurrent.futures.wait(futures, timeout=timeout_ms / 1000.0)
        return not pending

    def detach_all(self) -> None:
        """Stop following jobs without cancelling them: they go on running on the server."""
        for fut in list(self._futures.values()):
            fut.cancel()

    def close(self) -> None:
        self.detach_all()
        loop = self._loop
        if loop is not None:
            if self._client is not None:
                with _suppress():
                    asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(5)
            self._loop = None

    # -- what the status bar shows ------------------------------------------------------------
    @property
    def server_name(self) -> str:
        return self.transport.removeprefix("remote: ")

    def compute_info(self) -> dict:
        """The server's compute (same keys as app.engine.devices.compute_info); blocking: call off the GUI thread."""
        with RemoteClient(self.url, self.token, verify=self.verify, timeout=10) as c:
            return c.info()["compute"]

    # -- reopening the app -------------------------------------------------------------------
    def server_jobs(self) -> list[dict]:
        with RemoteClient(self.url, self.token, verify=self.verify) as c:
            return c.jobs()

    def list_runs(self) -> list[dict]:
        """Training runs on the server with their checkpoints (blocking: call off the GUI thread)."""
        with RemoteClient(self.url, self.token, verify=self.verify, timeout=20) as c:
            return c.runs()

    @staticmethod
    def unfinished(summaries: list[dict]) -> list[dict]:
        """The job summaries (from ``server_jobs``) still queued or running."""
        return [s for s in summaries if s.get("state") in ("queued", "running")]

    def reattach_from(self, summaries: list[dict], parent=None) -> list:
        """JobHandles following the jobs of ``summaries`` (no network call here: the GUI thread may call it).

        Summaries are the server's (newest first); handles come back oldest first. A summary whose
        spec this client cannot read (a job kind it does not know) is skipped.
        """
        from app.workers.base import JobHandle

        handles = []
        for s in reversed(summaries):  # oldest first
            try:
                spec = J.parse_spec(s["spec"])
            except Exception:
                continue
            handle = JobHandle(spec, job_id=s["id"], transport=self.transport, parent=parent)
            handle.heavy = bool(getattr(type(handle.spec), "heavy", False))
            if s.get("state") == "running":
                handle.mark_running()
            self.attach(handle)
            handles.append(handle)
        return handles

    def reattach(self, job_ids: list[str] | None = None, parent=None) -> list:
        """New JobHandles following jobs on the server: ``job_ids``, or all not yet finished.

        Each handle replays the job's events from the first one and then follows it live. The
        caller lists them (e.g. in the job manager) like jobs it submitted.
        """
        summaries = self.server_jobs()
        if job_ids is None:
            chosen = self.unfinished(summaries)
        else:
            by_id = {s["id"]: s for s in summaries}
            missing = [j for j in job_ids if j not in by_id]
            if missing:
                raise RemoteError(f"the server does not know job(s) {', '.join(missing)}", 404)
            chosen = [by_id[j] for j in job_ids]
        return self.reattach_from(chosen, parent)

    # -- a finished job's files, fetched for the panels that read them -----------------------
    def _download_files(self, job_id: str, files: list[str]) -> dict[str, str]:
        """Download server files into local_dir/<job id>/; {server path: local path}."""
        dest = self.local_dir / job_id
        dest.mkdir(parents=True, exist_ok=True)
        mapping = {}
        with RemoteClient(self.url, self.token, verify=self.verify, timeout=60) as c:
            for f in files:
                name = Path(f).name
                target = dest / name
                n = 1
                while target.exists() and str(target) in mapping.values():  # same name from two folders
                    target = dest / f"{Path(name).stem}-{n}{Path(name).suffix}"
                    n += 1
                mapping[f] = str(c.download(f, target))
        return mapping

    def fetch_artifact(self, job_id: str, server_path: str) -> Path:
        """Download one artifact of a job (a file, or a folder file by file) and return its local
        path. Blocking: call it off the GUI thread."""
        if self.local_dir is None:
            import tempfile

            self.local_dir = Path(tempfile.mkdtemp(prefix="radsynth-remote-"))
        return Path(self._download_files(job_id, [server_path])[server_path])

    async def _localise(self, handle, ev: J.Done) -> J.Done:
        result = ev.result if isinstance(ev.result, dict) else None
        if self.local_dir is None or result is None:
            return ev
        files = [f for f in result.get("files") or [] if isinstance(f, str)]
        if not files:
            return ev
        if len(files) > self.fetch_max_files:
            handle.post(J.Log("info", f"{len(files)} result files stay on the server (more than "
                                      f"{self.fetch_max_files} are not downloaded automatically)"))
            return ev
        try:
            mapping = await asyncio.to_thread(self._download_files, handle.job_id, files)
        except Exception as exc:  # the job succeeded on the server: say why its files are not here
            handle.post(J.Log("warning", f"could not download the result files from {self.url}: {exc}"))
            return ev
        handle.post(J.Log("info", f"downloaded {len(mapping)} result file(s) to {self.local_dir / handle.job_id}"))
        return J.Done({**result, "files": [mapping.get(f, f) for f in files], "server_files": files,
                       "local_dir": str(self.local_dir / handle.job_id)})

    # -- coroutines (on the runner's loop) ----------------------------------------------------
    async def _cancel(self, job_id: str) -> None:
        for attempt in range(5):
            try:
                await self._client.cancel(job_id)
                return
            except RemoteError as exc:
                if exc.status == 404:  # not submitted yet: the submit path cancels after submitting
                    return
                raise
            except httpx.TransportError:
                await asyncio.sleep(min(0.25 * 2**attempt, 4.0))

    async def _run(self, handle, submit: bool) -> None:
        client = self._client
        job_id = handle.job_id
        if submit:
            try:
                await client.submit(handle.spec, job_id)
            except RemoteError as exc:
                handle.post(J.Failed(f"the server refused the job: {exc}"))
                return
            except httpx.TransportError as exc:
                handle.post(J.Failed(f"cannot reach the server at {self.url}: {exc}"))
                return
            if handle.stop_requested():
                await self._cancel(job_id)
        from websockets.exceptions import InvalidStatus, WebSocketException

        after = 0
        lost_since: float | None = None
        delay = self.backoff_s[0]
        while True:
            try:
                async for what, value in client.stream(job_id, after):
                    if lost_since is not None:  # connected again
                        lost_since, delay = None, self.backoff_s[0]
                        handle.mark_running()
                    if what == "state" and value == "running":
                        handle.mark_running()
                    elif what == "event":
                        seq, ev = value
                        if seq <= after:
                            continue  # already delivered before the connection dropped
                        if seq != after + 1:
                            handle.post(J.Log("warning", f"event stream skipped from {after} to {seq}"))
                        after = seq
                        if self.on_event is not None:
                            self.on_event(job_id, seq, ev)
                        if isinstance(ev, J.Done):
                            ev = await self._localise(handle, ev)
                        handle.post(ev)
                        if isinstance(ev, J.TERMINAL):
                            return
                    elif what == "end":
                        return
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    handle.post(J.Failed("the server refused the token (401): check the connection settings"))
                    return
                if status == 404:
                    handle.post(J.Failed(f"the server no longer knows job {job_id}"))
                    return
            except (OSError, asyncio.TimeoutError, WebSocketException, ValueError):
                pass  # lost or refused connection, truncated frame: reconnect below
            if lost_since is None:
                lost_since = time.monotonic()
                handle.mark_reconnecting()
            if time.monotonic() - lost_since > self.max_reconnect_s:
                handle.post(J.Failed(f"lost the connection to {self.url} for {self.max_reconnect_s:.0f} s; the job "
                                     "may still run on the server: reconnect to reattach"))
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_s[1])


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


# ----------------------------------------------------------------------------------------------
# where the token lives on the client
# ----------------------------------------------------------------------------------------------


def token_store_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("RadSynth Studio", "RadSynth")) / "remote-tokens.json"


def load_token(url: str, path: Path | None = None) -> str:
    """The token saved for ``url`` ("" if none)."""
    path = path or token_store_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    return str(data.get(normalise_url(url), ""))


def save_token(url: str, token: str, path: Path | None = None) -> Path:
    """Save the token for ``url`` in a JSON file only the user can read (mode 0600)."""
    path = path or token_store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    if token:
        data[normalise_url(url)] = token
    else:
        data.pop(normalise_url(url), None)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path
