"""make package-check: the bundles, each unpacked into an empty folder, run without the project's Python.

    .venv/bin/python packaging/check.py READER.tar.gz [STUDIO.tar.gz]
    (dist/RadSynthReader-<version>-linux-x86_64.tar.gz, dist/RadSynthStudio-<version>-linux-x86_64.tar.gz)

The Reader does a whole reading:

1. unpack the tarball into an empty folder; ``--version`` and ``--selftest`` under QT_QPA_PLATFORM=offscreen
   with a clean environment (no project .venv, no PYTHONPATH, PATH of the system only);
2. the Studio (this checkout's CLI) makes a study and exports a reading package for reader ``dr-check``;
3. the bundle opens the package and answers three cases from a script (``--keys``), and is killed (SIGKILL)
   once it has said so; reopened, it finds the three answers (``--status``) and exports them;
4. the Studio imports the answers file and its statistics count three answers of ``dr-check``.

The Studio (when given): ``--version`` and ``--selftest`` (Qt plugins, the main window offscreen, a demo dataset
job and the torch self-test job) and a job from its command line (``radsynth-studio cli demo ...``), in the same
clean environment.

Prints the figures packaging/README.md quotes (sizes, time to the first window) and exits 0 when every step
passed. Each step's failure is one line naming the step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDIO = [sys.executable, "-m", "app.cli"]


def fail(step: str, why: str) -> None:
    print(f"FAILED {step}: {why}")
    sys.exit(1)


def clean_env(home: Path) -> dict:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "QT_QPA_PLATFORM": "offscreen", "LANG": "C.UTF-8"}


def run(cmd, env=None, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def unpack(tarball: Path, into: Path) -> Path:
    with tarfile.open(tarball) as tf:
        tf.extractall(into, filter="data")
    bundle = next(into.iterdir())
    unpacked_mb = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20
    print(f"bundle {tarball.name}: {tarball.stat().st_size / 2**20:.0f} MB packed, {unpacked_mb:.0f} MB unpacked")
    return bundle


def check_studio(tarball: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="studio-check-") as tmp:
        tmp = Path(tmp)
        (tmp / "home").mkdir()
        env = clean_env(tmp / "home")
        exe = unpack(tarball, tmp / "unpacked") / "radsynth-studio"
        r = run([str(exe), "--version"], env)
        if r.returncode != 0 or "RadSynth Studio" not in r.stdout:
            fail("studio --version", r.stderr[-500:] or r.stdout)
        t0 = time.perf_counter()
        r = run([str(exe), "--selftest"], env, timeout=600)
        print(r.stdout.strip())
        if r.returncode != 0:
            fail("studio --selftest", r.stderr[-1500:])
        print(f"ok  studio selftest (start, Qt, the main window offscreen, two jobs) in {time.perf_counter() - t0:.1f} s")
        r = run([str(exe), "cli", "demo", "--n", "16", "--size", "32", "--workspace", str(tmp / "ws"), "--json", "-q"],
                env, timeout=600)
        if r.returncode != 0 or last_json(r.stdout).get("kept") != 16:
            fail("studio cli demo", r.stdout[-500:] + r.stderr[-800:])
        print("ok  the bundle's command line ran a job (radsynth-studio cli demo)")


def main() -> int:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    tarball = Path(sys.argv[1]).resolve()
    if len(sys.argv) == 3:
        check_studio(Path(sys.argv[2]).resolve())
    with tempfile.TemporaryDirectory(prefix="reader-check-") as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        home.mkdir()
        env = clean_env(home)
        bundle = unpack(tarball, tmp / "unpacked")
        exe = bundle / "radsynth-reader"

        r = run([str(exe), "--version"], env)
        if r.returncode != 0 or "RadSynth Reader" not in r.stdout:
            fail("--version", r.stderr[-500:] or r.stdout)
        print(f"ok  {r.stdout.strip()}")
        t0 = time.perf_counter()
        r = run([str(exe), "--selftest"], env)
        first_window = time.perf_counter() - t0
        print(r.stdout.strip())
        if r.returncode != 0:
            fail("--selftest", r.stderr[-1500:])
        print(f"ok  selftest (start, Qt, a reading window offscreen, one answer) in {first_window:.1f} s")

        # the Studio side: a small study and its reading package (this checkout's own CLI and .venv)
        studio = tmp / "studio"
        senv = dict(os.environ, RADSYNTH_THREADS="2", QT_QPA_PLATFORM="offscreen")
        for cmd in (["demo", "--n", "32", "--size", "32"],
                    ["study", "create", "check", "--real", "demo-phantoms:test", "--synthetic", "demo-phantoms:train",
                     "--n", "6", "--size", "32"],
                    ["study", "export", "check", str(tmp / "check.h5"), "--readers", "dr-check"]):
            r = run(STUDIO + cmd + ["--workspace", str(studio), "--json", "-q"], senv, cwd=ROOT)
            if r.returncode != 0:
                fail(f"studio {' '.join(cmd[:2])}", r.stderr[-800:])
        print("ok  the Studio made study 'check' and exported its reading package")

        reader_ws = tmp / "reader-ws"
        base = [str(exe), str(tmp / "check.h5"), "--reader", "dr-check", "--workspace", str(reader_ws)]
        proc = subprocess.Popen(base + ["--keys", "R3 S4 R5"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 120
        said = ""
        while time.monotonic() < deadline and "answered" not in said:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                fail("scripted reading", proc.stderr.read()[-800:])
            said += line
        if "answered" not in said:
            proc.kill()
            fail("scripted reading", "no answer reported within 120 s")
        os.kill(proc.pid, signal.SIGKILL)  # a crash: nothing already answered may be lost
        proc.wait(30)
        print(f"ok  three cases answered by key press, then the Reader was killed ({said.strip()})")

        r = run(base + ["--status"], env)
        if r.returncode != 0 or last_json(r.stdout).get("answered") != 3:
            fail("reopen", r.stdout + r.stderr[-500:])
        print(f"ok  reopened: {r.stdout.strip()}")
        answers = tmp / "answers.json"
        r = run(base + ["--export-answers", str(answers)], env)
        if r.returncode != 0 or not answers.is_file():
            fail("export answers", r.stderr[-500:])
        r = run(STUDIO + ["study", "import", str(answers), "--workspace", str(studio), "--json", "-q"], senv, cwd=ROOT)
        if r.returncode != 0 or last_json(r.stdout).get("added") != 3:
            fail("studio import", r.stdout + r.stderr[-500:])
        r = run(STUDIO + ["study", "stats", "check", "--workspace", str(studio), "--json", "-q"], senv, cwd=ROOT)
        stats = last_json(r.stdout)
        if stats.get("per_reader", {}).get("dr-check", {}).get("n") != 3:
            fail("studio stats", r.stdout[-500:])
        print("ok  the Studio imported the answers: 3 answers of dr-check in its statistics")
    print("package check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
