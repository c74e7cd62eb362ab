"""A real server on loopback confines every path of every job spec, by the path roles of the spec's fields.

For every job kind and every path field, hostile values ("", "~", "~root", "..", "../x", an absolute path
outside, a bare name that only the server's working folder has, a symlink from a data root to outside) get
422 at submit, naming the field; outputs outside the workspace or inside a data root get 422; the same specs
with confined paths run; and nothing is written outside the workspace.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from app.engine import jobs as J
from app.engine.specs import kinds, spec_class
from app.engine.specs.fields import role_fields
from app.workers.remote import RemoteClient, RemoteError

from .conftest import LiveServer

#: a valid spec of every kind whose paths are all inside the server's folders (see the fixture)
CONFINED = {
    "ingest": {"source": "scans/images.npz"}, "eda": {"dataset": "demo-phantoms"}, "demo": {}, "train": {},
    "sample": {"run": "ckpt"}, "export-onnx": {"run": "ckpt"}, "recon": {"input": "scans/images.npz"},
    "recon-sweep": {"input": "scans/images.npz"}, "ct-recon": {"input": "scans/images.npz"},
    "evaluate": {"real": "demo-phantoms:test", "generated": "scans/images.npz"},
    "audit": {"generated": "scans/images.npz", "train": "demo-phantoms:train"},
    "study-create": {"name": "s2", "real": ["demo-phantoms:test"], "synthetic": ["scans/images.npz"]},
    "study-stats": {"study": "s1"}, "study-export": {"study": "s1", "out": "exports/s1.h5"},
    "study-import": {"file": "scans/note.txt"}, "selftest": {},
}


def snapshot(base: Path, skip: list[Path]) -> dict[str, tuple]:
    """Every file and folder under base (but ``skip``), with size and modification time."""
    out = {}
    for p in sorted(base.rglob("*")):
        if any(p == s or p.is_relative_to(s) for s in skip):
            continue
        st = p.lstat()
        out[str(p.relative_to(base))] = ("dir",) if p.is_dir() and not p.is_symlink() else (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """A server whose home, working folder, data root and surroundings are all under one folder we watch."""
    from app.engine.data.demo import DemoSpec, write_demo_dataset
    from app.engine.store import Workspace

    base = tmp_path_factory.mktemp("confined")
    data, outside, home, cwd, srv = (base / n for n in ("data", "outside", "home", "cwd", "srv"))
    for d in (data / "scans", data / "ckpt", outside, home, cwd, srv):
        d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(data / "scans" / "images.npz", images=rng.random((12, 32, 32)).astype(np.float32))
    (data / "scans" / "note.txt").write_text("a file inside the data root")
    (outside / "secret.txt").write_text("must never be read")
    np.savez(outside / "x.npz", images=rng.random((4, 32, 32)).astype(np.float32))
    np.savez(cwd / "stray.npz", images=rng.random((4, 32, 32)).astype(np.float32))  # only the working folder has it
    (home / "home.npz").write_bytes((cwd / "stray.npz").read_bytes())
    (data / "link-out").symlink_to(outside, target_is_directory=True)

    ws = Workspace.open(srv / "workspace")
    write_demo_dataset(ws, DemoSpec(n_images=16, size=32, slices_per_patient=2))
    ws.create_run("ddpm", {"kind": "train"}, dataset="demo-phantoms", run_id="run-1")
    made = J.run_collect(J.parse_spec({"kind": "study-create", "name": "s1", "real": ["demo-phantoms:test"],
                                        "synthetic": ["demo-phantoms:train"], "n_cases": 4, "size": 16}),
                         workspace=ws)
    assert isinstance(made[-1], J.Done), made[-1]
    before = snapshot(base, [srv])
    server = LiveServer(srv / "workspace", srv / "token", data, env={"HOME": str(home)}, cwd=cwd, log_dir=srv).start()
    yield {"server": server, "base": base, "data": data, "outside": outside, "ws": srv / "workspace",
           "before": before, "srv": srv}
    server.stop()


@pytest.fixture(scope="module")
def client(box):
    with RemoteClient(box["server"].url, box["server"].token) as c:
        yield c


def hostile_values(box, role) -> list[str]:
    outside = box["outside"]
    common = ["", "~", "~root", "..", "../x", "~/home.npz"]
    if role.role == "input":
        return common + [str(outside / "x.npz"), "/etc/passwd", "stray.npz", "link-out/x.npz", "scans/../../outside/x.npz"]
    if role.role == "output":
        return common + [str(outside / "o"), "/tmp/radsynth-o", str(box["data"] / "scans" / "images.npz"),
                         str(box["data"] / "new-folder"), str(box["ws"]), str(box["ws"] / "radsynth.sqlite"),
                         str(box["ws"] / "datasets")]
    if role.role == "ref":
        return common + [str(outside / "x.npz"), "stray.npz", "no-such-object", "link-out/x.npz"]
    return ["../x", "~", "a/b", "..", "/abs"]  # names of new workspace objects


CASES = [(k, f.name) for k in kinds() for f in role_fields(spec_class(k))]


@pytest.mark.parametrize("kind,field", CASES)
def test_every_hostile_path_of_every_field_gets_422_naming_the_field_at_submit(box, client, kind, field):
    f = next(d for d in role_fields(spec_class(kind)) if d.name == field)
    for bad in hostile_values(box, f.role):
        value = f.role.prefix + bad if f.role.prefix else bad
        spec = {"kind": kind, **CONFINED[kind], field: [value] if f.many else value}
        with pytest.raises(RemoteError) as exc:
            client.submit(spec)
        assert exc.value.status == 422, (kind, field, value)
        assert exc.value.detail[0]["loc"][0] == field, (kind, field, value, exc.value.detail)


def test_every_kind_with_confined_paths_is_accepted(box, client):
    for kind in kinds():
        # accepted at submit (what the job then makes of a tiny spec is not the point here): cancel at once
        job_id = client.submit({"kind": kind, **CONFINED[kind]})
        client.cancel(job_id)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(j["state"] in ("queued", "running") for j in client.jobs()):
        time.sleep(0.1)


def wait_done(client, job_id, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = client.job(job_id)
        if s["state"] in ("done", "failed", "cancelled"):
            return s
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_confined_jobs_run_read_inside_the_roots_and_write_only_under_the_workspace(box, client):
    runs = {
        "ingest": {"kind": "ingest", "source": "scans/images.npz", "name": "ing1", "size": 32},
        "eda": {"kind": "eda", "dataset": "demo-phantoms", "n_samples": 4},
        "stats": {"kind": "study-stats", "study": "s1", "out": "stats1"},
        "export": {"kind": "study-export", "study": "s1", "out": "exports/s1-package.h5"},
        "audit": {"kind": "audit", "generated": "scans/images.npz", "train": "demo-phantoms:train",
                  "holdout": "demo-phantoms:test", "extractor": "none", "ssim": False, "out": "audit1",
                  "measures": ["l2", "ncc"]},
        "create": {"kind": "study-create", "name": "s3", "real": ["demo-phantoms:test"],
                   "synthetic": ["scans/images.npz"], "n_cases": 4, "size": 16},
    }
    results = {}
    for name, spec in runs.items():
        state = wait_done(client, client.submit(spec))
        assert state["state"] == "done", (name, state)
        results[name] = state
    outputs = box["ws"] / "outputs"
    assert (outputs / "stats1" / "stats.json").is_file()  # a relative output lands under outputs/
    assert (outputs / "exports" / "s1-package.h5").is_file()
    assert (outputs / "audit1").is_dir()
    # the same output again would replace what that job wrote: refused
    with pytest.raises(RemoteError) as exc:
        client.submit(runs["export"])
    assert exc.value.status == 422 and exc.value.detail[0]["loc"] == ["out"]
    # nothing outside the workspace changed: data root, outside, home, working folder
    assert snapshot(box["base"], [box["srv"]]) == box["before"]


def test_a_registered_dataset_name_wins_over_a_same_named_file_in_the_working_folder(box, client):
    audit = {"kind": "audit", "generated": "stray.npz", "train": "demo-phantoms:train", "extractor": "none",
             "ssim": False, "measures": ["l2"], "holdout": "demo-phantoms:test"}
    # the server's working folder holds stray.npz (4 images): as a path it is not under a data root
    with pytest.raises(RemoteError) as exc:
        client.submit(audit)
    assert exc.value.status == 422 and exc.value.detail[0]["loc"] == ["generated"]
    with pytest.raises(RemoteError) as exc:  # a dataset reference without a split names the dataset itself
        client.submit({"kind": "eda", "dataset": "demo-phantoms:test"})
    assert exc.value.status == 422 and exc.value.detail[0]["loc"] == ["dataset"]
    # once a dataset of that name exists (12 images), the name means the dataset, never the stray file
    made = wait_done(client, client.submit({"kind": "ingest", "source": "scans/images.npz", "name": "stray.npz",
                                            "size": 32, "val_fraction": 0, "test_fraction": 0}))
    assert made["state"] == "done", made
    state = wait_done(client, client.submit(audit))
    assert state["state"] == "done", state
    assert state["result"]["counts"]["generated"] == 12, state["result"]["counts"]
