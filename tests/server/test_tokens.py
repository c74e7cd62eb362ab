"""Issued tokens against a real `radsynth serve` subprocess: new, list and revoke take effect without a restart;
a reader token reads its own study as its own reader and gets 403 for everything else."""

from __future__ import annotations

import json
import os
import stat

import httpx
import numpy as np
import pytest

from app.engine import study as S
from app.engine.store import Workspace
from app.server.main import main as serve_main
from app.server.tokens import store_path
from app.workers.remote import AuthError, RemoteClient, RemoteError

from .conftest import LiveServer
from .test_security import all_routes


@pytest.fixture(scope="module")
def reading_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("radsynth-tokens")
    (base / "data").mkdir()
    rng = np.random.default_rng(0)
    sets = {}
    for name in ("real", "synthetic"):
        sets[name] = str(base / f"{name}.npz")
        np.savez(sets[name], images=rng.uniform(-1, 1, (12, 1, 16, 16)).astype(np.float32))
    ws = Workspace.open(base / "workspace")
    for study in ("turing", "other"):
        S.create_study(ws, S.StudyCreateSpec(name=study, real=[sets["real"]], synthetic=[sets["synthetic"]],
                                             n_cases=6, size=16, seed=3))
    srv = LiveServer(base / "workspace", base / "config" / "token", base / "data",
                     extra=["--log-level", "debug"]).start()
    yield srv
    srv.stop()


def token_cli(srv, capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = serve_main(["token", *args, "--token-file", str(srv.token_file), "--workspace", str(srv.workspace)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def new_token(srv, capsys, *args) -> dict:
    rc, out, err = token_cli(srv, capsys, "new", "--json", *args)
    assert rc == 0, err
    return json.loads(out.strip().splitlines()[-1])


def get(srv, path: str, token: str, **kw) -> httpx.Response:
    return httpx.get(srv.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10, **kw)


def test_a_new_token_works_at_once_a_revoked_one_is_refused_at_once_and_list_shows_no_secret(reading_server, capsys):
    srv = reading_server
    issued = new_token(srv, capsys)
    assert issued["role"] == "admin" and issued["id"].startswith("tok-")
    token = issued["token"]
    assert get(srv, "/api/info", token).status_code == 200  # no restart

    store = store_path(srv.token_file)
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    assert token not in store.read_text()  # only its SHA-256 is kept

    rc, out, _ = token_cli(srv, capsys, "list", "--json")
    assert rc == 0
    rows = {r["id"]: r for r in json.loads(out)["tokens"]}
    assert rows[issued["id"]]["role"] == "admin" and rows[issued["id"]]["created"] > 0
    assert rows["primary"]["role"] == "admin"
    rc, text, _ = token_cli(srv, capsys, "list")
    for listing in (out, text):
        assert token not in listing and srv.token not in listing and "hash" not in listing
    assert issued["id"] in text and "admin" in text

    rc, _, _ = token_cli(srv, capsys, "revoke", issued["id"])
    assert rc == 0
    assert get(srv, "/api/info", token).status_code == 401  # at once
    with pytest.raises(AuthError):
        RemoteClient(srv.url, token).info()
    assert get(srv, "/api/info", srv.token).status_code == 200  # the primary token keeps working

    rc, _, err = token_cli(srv, capsys, "revoke", issued["id"])
    assert rc == 2 and f"no token with id {issued['id']!r}" in err
    assert token not in (srv.workspace.parent / f"server-{srv.port}.log").read_text()  # debug log: no token


def test_revoking_the_primary_token_rotates_the_token_file(reading_server, capsys):
    srv = reading_server
    old = srv.token
    rc, out, _ = token_cli(srv, capsys, "revoke", "primary")
    assert rc == 0 and old not in out
    assert srv.token != old and stat.S_IMODE(os.stat(srv.token_file).st_mode) == 0o600
    assert get(srv, "/api/info", old).status_code == 401
    assert get(srv, "/api/info", srv.token).status_code == 200


def test_reader_tokens_need_a_reader_and_an_existing_study(reading_server, capsys):
    rc, _, err = token_cli(reading_server, capsys, "new", "--reader", "dr-a")
    assert rc == 2 and "--reader and --study go together" in err
    rc, _, err = token_cli(reading_server, capsys, "new", "--reader", "dr-a", "--study", "nope")
    assert rc == 2 and "no study named 'nope'" in err
    rc, _, err = token_cli(reading_server, capsys, "new", "--reader", "a/b", "--study", "turing")
    assert rc == 2 and "reader id" in err


def test_a_reader_token_reads_its_study_in_its_order_and_its_answers_reach_the_owner(reading_server, capsys):
    srv = reading_server
    issued = new_token(srv, capsys, "--reader", "dr-a", "--study", "turing")
    assert issued["role"] == "reader" and issued["reader"] == "dr-a" and issued["study"] == "turing"
    ws = Workspace.open(srv.workspace)
    local = S.ReadingSession(ws, "turing", "dr-a")
    with RemoteClient(srv.url, issued["token"]) as rc:
        listing = rc.reading_cases("turing")
        assert [c["case_id"] for c in listing["cases"]] == local.order
        assert listing["mode"] == "single" and listing["n_answered"] == 0 and listing["first_unanswered"] == 0
        text = json.dumps(listing)
        assert "truth" not in text and "origin" not in text and "real.npz" not in text
        for i, case in enumerate(listing["cases"]):
            assert np.array_equal(rc.reading_image("turing", case["case_id"]), local.image(i))
        for i, case in enumerate(listing["cases"]):
            row = rc.post_answer("turing", case["case_id"], answer=S.TRUTHS[i % 2], confidence=1 + i % 5,
                                 comment="edge" if i == 0 else None, seconds=2.5 + i)
            assert row["n_answered"] == i + 1
        assert rc.reading_cases("turing")["first_unanswered"] is None
        with pytest.raises(RemoteError) as exc:
            rc.post_answer("turing", listing["cases"][0]["case_id"], answer="maybe", confidence=3)
        assert exc.value.status == 422 and "answer must be one of" in str(exc.value)
        with pytest.raises(RemoteError) as exc:
            rc.post_answer("turing", "no-such-case", answer="real", confidence=3)
        assert exc.value.status == 404 and "case_id" in str(exc.value)

    rows = {r["case_id"]: r for r in ws.query("SELECT * FROM study_answers WHERE study_id = ? AND reader_id = 'dr-a'",
                                              (S.get_study(ws, "turing").id,))}
    for i, cid in enumerate(local.order):  # exactly what ReadingSession.record writes
        r = rows[cid]
        assert (r["answer"], r["confidence"], r["plausibility"], r["comment"], r["seconds"], r["over_time"]) == (
            S.TRUTHS[i % 2], 1 + i % 5, None, "edge" if i == 0 else None, 2.5 + i, 0)
    stats = S.study_stats(ws, "turing")
    assert "dr-a" in json.dumps(stats)
    assert [p.answered for p in S.list_readers(ws, "turing") if p.reader_id == "dr-a"] == [6]


def test_a_reader_token_gets_403_for_everything_else(reading_server, capsys, tmp_path):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    srv = reading_server
    token = new_token(srv, capsys, "--reader", "dr-b", "--study", "turing")["token"]
    headers = {"Authorization": f"Bearer {token}"}
    own = {("GET", "/api/reading/x/cases"), ("GET", "/api/reading/x/cases/x/image"), ("POST", "/api/reading/x/answers")}
    routes = [r for r in all_routes(tmp_path) if r not in own]
    assert ("GET", "/api/artifacts") in routes and ("WS", "/api/jobs/x/events") in routes
    routes += [("GET", "/api/reading/other/cases"), ("POST", "/api/reading/other/answers"),
               ("GET", "/api/reading/other/cases/x/image"), ("DELETE", "/api/reading/turing/cases"),
               ("GET", "/api/no-such-endpoint"), ("GET", "/")]
    for method, path in routes:
        if method == "WS":
            with pytest.raises(InvalidStatus) as exc, \
                    connect(f"ws://127.0.0.1:{srv.port}{path}", additional_headers=headers, open_timeout=10):
                pass
            assert exc.value.response.status_code == 403, path
            continue
        r = httpx.request(method, srv.url + path, headers=headers, params={"path": "radsynth.sqlite"},
                          json={"kind": "selftest"}, timeout=10)
        assert r.status_code == 403, (method, path, r.status_code)
        assert "reader token of study 'turing' for reader 'dr-b'" in r.json()["detail"]
    with RemoteClient(srv.url, token) as rc:
        with pytest.raises(RemoteError) as exc:
            rc.reading_cases("turing", reader="dr-a")  # another reader of its own study
        assert exc.value.status == 403 and "reader" in str(exc.value)
        with pytest.raises(RemoteError) as exc:
            rc.jobs()
        assert exc.value.status == 403
        assert rc.reading_cases("turing")["reader"] == "dr-b"
    # an admin token reads as any reader it names
    with RemoteClient(srv.url, srv.token) as admin:
        assert admin.reading_cases("turing", reader="dr-b")["n_cases"] == 6
        with pytest.raises(RemoteError) as exc:
            admin.reading_cases("turing")
        assert exc.value.status == 422 and "reader" in str(exc.value)


def test_a_token_store_readable_by_others_is_refused(tmp_path, capsys):
    token_file = tmp_path / "token"
    assert serve_main(["token", "new", "--token-file", str(token_file)]) == 0
    store_path(token_file).chmod(0o644)
    capsys.readouterr()
    assert serve_main(["token", "list", "--token-file", str(token_file)]) == 1
    assert "readable by others" in capsys.readouterr().err
