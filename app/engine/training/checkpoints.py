"""Reading training checkpoints: a run id or a checkpoint folder -> a network ready to sample from.

A checkpoint folder (written by ``write_checkpoint`` below, read by everything else here) holds::

    model.safetensors   raw weights            ema.safetensors   EMA weights (what samplers use)
    state.pt            optimiser / scheduler / RNG state (tensors and numbers only; resume)
    spec.json           the TrainSpec          meta.json         image size, channels, classes,
                                                                 process, net config, hashes, step

Weights are read with safetensors only (no pickle); ``state.pt`` is only ever loaded with
``torch.load(weights_only=True)`` by the trainer.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine.errors import UserError

MODEL_FILE, EMA_FILE, STATE_FILE, SPEC_FILE, META_FILE = (
    "model.safetensors", "ema.safetensors", "state.pt", "spec.json", "meta.json")


@dataclass
class LoadedModel:
    """A trained network in eval mode with everything needed to sample from it and to cite it."""

    net: Any  # app.engine.nets.unet.UNet, eval mode, on ``device``
    process: Any  # app.engine.diffusion.base.Process
    spec: Any  # app.engine.specs.train.TrainSpec
    class_names: list[str]
    image_size: int
    channels: int
    path: Path  # the checkpoint folder
    sha256: str  # of the weights file that was loaded (ema.safetensors or model.safetensors)
    epoch: int
    step: int = 0
    run_id: str | None = None
    ema: bool = True
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.net.num_classes)

    @property
    def weights_file(self) -> Path:
        return self.path / (EMA_FILE if self.ema else MODEL_FILE)


def _read_meta(folder: Path) -> dict:
    path = folder / META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"checkpoint file {path} is missing") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"checkpoint file {path} is unreadable or corrupt ({exc})") from None
    if not isinstance(meta, dict):
        raise UserError(f"checkpoint file {path} is corrupt (not a JSON object)")
    return meta


def list_checkpoint_folders(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first (by step, then epoch)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        if not d.is_dir() or d.name.startswith("."):  # .tmp-* / .old-* are unfinished writes
            continue
        try:
            meta = json.loads((d / META_FILE).read_text())
            key = (int(meta.get("step", 0)), int(meta.get("epoch", 0)), d.name)
        except (OSError, ValueError, json.JSONDecodeError):
            continue
        found.append((key, d))
    return [d for _, d in sorted(found)]


def prior_channels(run_dir: Path) -> int | None:
    """Image channels of a run's newest checkpoint (2: a complex MRI prior, 1: a magnitude / CT one), or None
    when the run has no complete checkpoint yet: what a reconstruction picker offers it for. Torch-free."""
    folders = list_checkpoint_folders(run_dir)
    if not folders:
        return None
    try:
        meta = json.loads((folders[-1] / META_FILE).read_text())
        return int(meta.get("channels") or (meta.get("net") or {}).get("in_channels") or 1)
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def list_checkpoints(run_id: str, workspace=None) -> list[dict]:
    """[{"name", "path", "epoch", "step", "loss", "created", "model_sha256", "ema_sha256"}] oldest first."""
    ws = _workspace(workspace)
    rec = ws.run(run_id)
    out = []
    for d in list_checkpoint_folders(rec.path):
        meta = _read_meta(d)
        out.append({
            "name": d.name, "path": str(d), "epoch": meta.get("epoch"), "step": meta.get("step"),
            "loss": meta.get("loss"), "created": meta.get("created"),
            "model_sha256": meta.get("model_sha256"), "ema_sha256": meta.get("ema_sha256"),
        })
    return out


def read_state_dict(path: Path) -> dict:
    """Tensors of a safetensors file on the CPU, with a clear UserError naming a missing / corrupt file."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint file {path} is missing")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises SafetensorError / OSError for damaged headers or data
        raise UserError(f"checkpoint file {path} is corrupt or not a safetensors file ({exc})") from None


def _workspace(workspace):
    from app.engine.store import Workspace

    if workspace is None or isinstance(workspace, (str, Path)):
        return Workspace.open(workspace)
    return workspace


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _has_run(workspace, run_id: str) -> bool:
    try:
        _workspace(workspace).run(run_id)
        return True
    except Exception:
        return False


def resolve_checkpoint(ref: str | Path, workspace=None, epoch: int | None = None) -> tuple[Path, str | None]:
    """(checkpoint folder, run id or None) for a run id (latest, or the given epoch) or a folder path."""
    p = Path(ref)
    # a run id of the given workspace is that run, whatever folder of that name the working folder holds
    plain = isinstance(ref, str) and "/" not in ref and "\\" not in ref
    registered = plain and workspace is not None and _has_run(workspace, ref)
    if not registered and p.is_dir() and (p / META_FILE).exists():
        return p, None
    if not registered and p.is_dir() and (p / "checkpoints").is_dir():  # a run folder
        run_dir, run_id = p, p.name
    else:
        if isinstance(ref, Path) or "/" in str(ref) or "\\" in str(ref):
            raise UserError(f"checkpoint folder {ref} does not exist or holds no {META_FILE}")
        rec = _workspace(workspace).run(str(ref))
        run_dir, run_id = rec.path, rec.id
    folders = list_checkpoint_folders(run_dir)
    if not folders:
        raise UserError(f"run {run_id!r} has no checkpoint yet in {run_dir / 'checkpoints'}")
    if epoch is None:
        return folders[-1], run_id
    at_epoch = [d for d in folders if int(_read_meta(d).get("epoch", -1)) == int(epoch)]
    if not at_epoch:
        have = sorted({int(_read_meta(d).get("epoch", -1)) for d in folders})
        raise UserError(f"run {run_id!r} has no checkpoint at epoch {epoch} (epochs with one: {have})")
    return at_epoch[-1], run_id


def load_checkpoint(ref: str | Path, workspace=None, ema: bool = True, device: str = "cpu",
                    epoch: int | None = None) -> LoadedModel:
    """Load a checkpoint for sampling: ``ref`` is a run id in the workspace (its latest checkpoint,
    or the one at ``epoch``) or a checkpoint folder. ``ema`` picks the EMA weights (default) or the
    raw ones. The network comes back in eval mode on ``device``."""
    from app.engine.devices import resolve_device
    from app.engine.diffusion.base import make_process
    from app.engine.nets.unet import NetConfig, UNet
    from app.engine.specs.train import TrainSpec

    folder, run_id = resolve_checkpoint(ref, workspace, epoch)
    meta = _read_meta(folder)
    spec_path = folder / SPEC_FILE
    try:
        spec = TrainSpec.model_validate_json(spec_path.read_text())
    except FileNotFoundError:
        raise UserError(f"checkpoint file {spec_path} is missing") from None
    except Exception as exc:
        raise UserError(f"checkpoint file {spec_path} is corrupt ({exc})") from None
    try:
        net_cfg = NetConfig.model_validate(meta["net"])
        proc_cfg = dict(meta["process"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"checkpoint file {folder / META_FILE} lacks a valid net / process description ({exc})") from None
    process = make_process(proc_cfg.pop("name"), **proc_cfg)
    weights = folder / (EMA_FILE if ema else MODEL_FILE)
    state = read_state_dict(weights)
    net = UNet(net_cfg)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"checkpoint file {weights} does not match its network description ({exc})") from None
    net = net.to(resolve_device(device)).eval()
    return LoadedModel(
        net=net, process=process, spec=spec, class_names=list(meta.get("class_names", [])),
        image_size=int(meta.get("image_size", net_cfg.image_size)), channels=int(meta.get("channels", net_cfg.in_channels)),
        path=folder, sha256=_sha256(weights), epoch=int(meta.get("epoch", 0)), step=int(meta.get("step", 0)),
        run_id=meta.get("run") or run_id, ema=ema, meta=meta,
    )


def write_checkpoint(folder: Path, *, net, ema_net, state: dict, spec, meta: dict) -> Path:
    """Write a checkpoint folder atomically: everything into a temporary sibling, then one rename."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"format": "radsynth-unet"})
        ema_tensors = {k: v.detach().to("cpu").contiguous() for k, v in ema_net.state_dict().items()}
        save_file(ema_tensors, str(tmp / EMA_FILE), metadata={"format": "radsynth-unet-ema"})
        torch.save(state, tmp / STATE_FILE)
        (tmp / SPEC_FILE).write_text(spec.to_json())
        meta = dict(meta, model_sha256=_sha256(tmp / MODEL_FILE), ema_sha256=_sha256(tmp / EMA_FILE))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        old = None
        if folder.exists():
            old = folder.parent / f".old-{folder.name}-{uuid.uuid4().hex[:6]}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        # looked at before the partial files are removed (which frees the space again): a write that failed on
        # a full disk becomes ENOSPC naming the folder, whatever torch or safetensors called it
        full = isinstance(exc, Exception) and _disk_full(exc, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise OSError(errno.ENOSPC, "No space left on device", str(folder)) from exc
        raise
    return folder


#: how torch's and safetensors' writers say that a write failed (a full disk, most often)
_WRITE_FAILED = ("PytorchStreamWriter failed writing", "inline_container.cc", "file write failed",
                 "No space left on device", "errno = 28")


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether a failed checkpoint write ran out of disk: ENOSPC in the exception chain, or a writer's "write
    failed" with less free space left on the folder's disk than the checkpoint had written so far."""
    seen: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in seen:
        seen.append(e)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return True
        e = e.__cause__ or e.__context__
    if not any(any(w in str(x) for w in _WRITE_FAILED) for x in seen):
        return False
    try:
        written = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        return shutil.disk_usage(folder).free <= max(written, 1 << 20)
    except OSError:
        return True
