"""The training job: a U-Net trained under a noise process on a workspace dataset, resumable, with EMA.

``radsynth train --dataset NAME --preset NAME [--epochs N] [--resume RUN] --json``

One loop serves every process (app/engine/diffusion): AdamW, linear warm-up then cosine decay,
gradient clipping, gradient accumulation, an exponential moving average of the weights (what the
samplers use), bf16 / fp16 autocast ("auto", the default: bf16 where the device runs it natively,
devices.autocast_dtype), loss scalars every ``log_every`` steps, a validation loss per
noise level and a grid of preview samples (fixed seed) every few epochs, checkpoints every
``checkpoint_every`` epochs, on a stop and at the end.

Determinism and resume: the data order of epoch e is a permutation seeded by (seed, e)
(``DistributedSampler.set_epoch``), the noise and label dropout come from one explicit generator,
weights are initialised and dropout is drawn inside ``torch.random.fork_rng`` so the caller's
global RNG is untouched. A checkpoint stores weights, EMA, optimiser, scheduler, every generator's
state and the position in the epoch, so a resumed run continues the same loss curve bit for bit.

Data parallel: under ``torchrun`` (env WORLD_SIZE > 1) every rank runs this same job; gradients
are averaged by DistributedDataParallel (NCCL on GPUs, gloo on CPU); only rank 0 registers the run,
emits events and writes files. A stop or a non-finite loss on any rank stops all of them at the
same step (one all-reduce of two flags per step).
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.engine.jobs import JobCancelled, JobContext, UserError, register
from app.engine.ranks import DistInfo, process_group
from app.engine.run_history import ScalarLog

# presets and the spec's resume rules are spec facts (the Training panel reads them without the engine)
from app.engine.specs.train import (  # noqa: F401 (list_presets, load_preset: re-exported for scripts)
    PRESETS_DIR,
    PROCESS_OPTION_FIELDS,
    RESUME_OVERRIDABLE,
    TrainSpec,
    dataset_misfit,
    list_presets,
    load_preset,
    preset_needs,
    resolve_spec,
)
from app.engine.training.checkpoints import (
    EMA_FILE,
    META_FILE,
    MODEL_FILE,
    STATE_FILE,
    list_checkpoint_folders,
    read_state_dict,
    write_checkpoint,
)


def _resume_spec(spec: TrainSpec, saved: dict, run_id: str) -> TrainSpec:
    """The saved run's spec with this spec's explicit, resumable overrides (epochs, max_steps...)."""
    base = TrainSpec.model_validate(saved)
    given = spec.model_fields_set - {"kind", "resume", "preset"}
    clashes = []
    if "preset" in spec.model_fields_set and spec.preset and spec.preset != base.preset:
        clashes.append(f"preset (run: {base.preset!r}, given: {spec.preset!r})")
    updates: dict[str, Any] = {"resume": run_id}
    for k in sorted(given):
        new, old = getattr(spec, k), getattr(base, k)
        if k in RESUME_OVERRIDABLE:
            updates[k] = new
        elif new != old:
            clashes.append(f"{k} (run: {old!r}, given: {new!r})")
    if clashes:
        raise UserError(
            f"run {run_id!r} cannot be resumed with different settings: {'; '.join(clashes)}. Only "
            f"{', '.join(RESUME_OVERRIDABLE)} may change on resume; start a new run otherwise"
        )
    return base.model_copy(update=updates)


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------


def build_net_config(spec: TrainSpec, image_size: int, num_classes: int, in_channels: int = 1):
    from app.engine.nets.unet import NetConfig

    return NetConfig(
        image_size=image_size, in_channels=in_channels, base_channels=spec.base_channels,
        channel_mults=tuple(spec.channel_mults), num_res_blocks=spec.num_res_blocks,
        attention_resolutions=tuple(spec.attention_resolutions), num_heads=spec.num_heads, dropout=spec.dropout,
        num_classes=num_classes,
    )


def build_process(spec: TrainSpec):
    from app.engine.diffusion.base import make_process

    opts = {k: getattr(spec, k) for k in PROCESS_OPTION_FIELDS if getattr(spec, k) is not None}
    return make_process(spec.process, **opts)


class EMA:
    """Exponential moving average of a network's weights (Polyak averaging as in Ho et al. 2020, B).

    Written out (rather than torch.optim.swa_utils.AveragedModel) for the decay warm-up
    min(decay, (1 + n) / (10 + n)) over the first n updates (as TensorFlow's ExponentialMovingAverage
    with num_updates), without which short runs would sample from nearly untrained weights.
    """

    def __init__(self, net, decay: float):
        self.decay = float(decay)
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        self.updates = 0

    def update(self, net) -> None:
        import torch

        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        with torch.no_grad():
            ema_p = [p for p in self.net.parameters()]
            src = [p.detach() for p in net.parameters()]
            torch._foreach_lerp_(ema_p, src, 1.0 - d)
            for b_ema, b in zip(self.net.buffers(), net.buffers(), strict=True):
                b_ema.copy_(b)


def lr_lambda_factory(warmup: int, total: int, schedule: str):
    """Multiplier of the peak lr at optimizer step s: linear warm-up, then cosine to 0 or constant."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))  # Loshchilov & Hutter 2017, eq. 5

    return f


def _seed(*keys: int) -> int:
    """A 63-bit torch seed mixed from integers (numpy's SeedSequence), for independent streams."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> 1)


def _resize(images: np.ndarray, size: int):
    """(N, 1, H, W) float32 -> torch (N, 1, size, size); area averaging when shrinking, bilinear otherwise."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.shape[-2:] == (size, size):
        return x
    out = []
    for i in range(0, len(x), 256):
        chunk = x[i : i + 256]
        if chunk.shape[-1] >= size and chunk.shape[-2] >= size:
            out.append(F.interpolate(chunk, size=(size, size), mode="area"))
        else:
            out.append(F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
    return torch.cat(out).clamp_(-1, 1) if out else x.new_zeros((0, 1, size, size))


# --------------------------------------------------------------------------------------------
# Checkpoint names (writing and reading: training/checkpoints.py)
# --------------------------------------------------------------------------------------------


def checkpoint_name(epoch: int, step: int, mid_epoch: bool) -> str:
    return f"epoch-{epoch:04d}-step-{step:08d}" if mid_epoch else f"epoch-{epoch:04d}"


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


@dataclass
class _Position:
    epoch: int = 0  # completed epochs
    batch: int = 0  # optimizer steps done in the current epoch
    step: int = 0  # optimizer steps done in all
    losses: list[float] = field(default_factory=list)  # losses since the last log


class Trainer:
    """One training run (one rank of it). ``run()`` returns the job result."""

    def __init__(self, spec: TrainSpec, ctx: JobContext, dist: DistInfo):
        self.ctx = ctx
        self.dist = dist
        self.ws = ctx.workspace
        self.t0 = time.perf_counter()
        if spec.resume:
            rec = self.ws.run(spec.resume)
            spec = _resume_spec(spec, rec.spec, rec.id)
            self.run_id = rec.id
            self.run_dir = rec.path
        else:
            spec = resolve_spec(spec)
            if not spec.dataset:
                raise UserError("say which dataset to train on (dataset), or which run to continue (resume)")
            misfit = dataset_misfit(preset_needs(spec.preset), self.ws.dataset(spec.dataset)) if spec.preset else None
            if misfit:
                raise UserError(f"preset {spec.preset}: {misfit}")
            self.run_id = None
            self.run_dir = None
        self.spec = spec
        self.history: ScalarLog | None = None  # the run's scalars.jsonl, written by the main rank
        self.last_checkpoint: Path | None = None
        self.checkpoints: list[str] = []
        self.preview_warned = False

    # -- helpers ---------------------------------------------------------------------------
    def log(self, text: str, level: str = "info") -> None:
        if self.dist.main:
            self.ctx.log(text, level)

    def _device(self):
        import torch

        from app.engine.devices import resolve_device

        dev = resolve_device(self.spec.device)
        if self.dist.active and dev.type == "cuda":
            dev = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(dev)
        return dev

    def _load_data(self):
        import torch

        from app.engine.data.cache import ImageDataset

        spec = self.spec
        ds = ImageDataset.from_workspace(self.ws, spec.dataset)
        self.dataset = ds
        train_idx = ds.indices("train")
        if len(train_idx) == 0:
            raise UserError(f"dataset {spec.dataset!r} ({ds.path}) has no images in its 'train' split")
        if spec.image_size is None and ds.height != ds.width:
            raise UserError(
                f"dataset {spec.dataset!r} has {ds.height}x{ds.width} images: give a square image_size to train at"
            )
        self.data_size = int(spec.image_size or ds.height)  # the images are resized to this
        self.image_size = int(spec.crop_size or self.data_size)  # the network's training (and sample) size
        if self.image_size > self.data_size:
            raise UserError(f"crop_size {spec.crop_size} is larger than the {self.data_size}x{self.data_size} images")
        self.channels = int(ds.channels)
        self.complex = ds.is_complex
        if spec.random_phase and not self.complex:
            raise UserError(f"random_phase needs a complex dataset (real, imaginary); {spec.dataset!r} is not one "
                            "(import complex MR data with ingest --complex)")
        self.random_phase = self.complex if spec.random_phase is None else bool(spec.random_phase)
        self.complex_headroom = float(ds.attrs.get("complex_headroom", 1.0)) if self.complex else None
        labels = ds.labels("train")
        if spec.class_conditional:
            if ds.num_classes < 1 or (labels < 0).any():
                raise UserError(
                    f"dataset {spec.dataset!r} has no class label for every training image: train with "
                    "class_conditional off, or ingest it with labels"
                )
            self.num_classes = ds.num_classes
            self.class_names = list(ds.class_names)
        else:
            self.num_classes = 0
            self.class_names = list(ds.class_names)
        raw = ds.images(indices=train_idx, stored=True)
        self.data_hash = hashlib.sha256(raw.tobytes() + labels.astype(np.int64).tobytes()).hexdigest()[:16]
        self.train_x = _resize(raw, self.data_size)
        self.train_y = torch.from_numpy(labels.astype(np.int64))
        self.train_index = train_idx
        val_idx = ds.indices("val")
        if len(val_idx) == 0:
            rng = np.random.default_rng([spec.seed, 99])
            pick = np.sort(rng.permutation(len(train_idx))[: min(256, len(train_idx))])
            pick = torch.from_numpy(pick)
            self.val_x, self.val_y = self.train_x[pick], self.train_y[pick]
            self.val_note = f"no 'val' split: validating on {len(pick)} training images"
        else:
            val_idx = val_idx[:256]
            self.val_x = _resize(ds.images(indices=val_idx, stored=True), self.data_size)
            self.val_y = torch.from_numpy(ds.labels("val")[:256].astype(np.int64))
            self.val_note = f"validating on {len(val_idx)} 'val' images"
        if self.image_size < self.data_size:  # validation on the centre crops
            o = (self.data_size - self.image_size) // 2
            self.val_x = self.val_x[..., o : o + self.image_size, o : o + self.image_size].contiguous()
            self.val_note += f" (centre {self.image_size}x{self.image_size} crops)"
        if raw.shape[-1] != self.data_size or raw.shape[-2] != self.data_size:
            self.log(f"resizing {ds.height}x{ds.width} images to {self.data_size}x{self.data_size}")

    def _augment(self, x, gen):
        """A training batch's random crops, flips and global phases (drawn from the noise generator, so
        a resumed run continues the same sequence); the identity when none is asked for."""
        import torch

        spec, b, dev = self.spec, len(x), gen.device
        if self.image_size < self.data_size:
            c = self.image_size
            off = torch.randint(0, self.data_size - c + 1, (b, 2), generator=gen, device=dev).tolist()
            x = torch.stack([im[..., i : i + c, j : j + c] for im, (i, j) in zip(x, off)])
        x = x.to(self.device, non_blocking=True)
        if spec.hflip:
            flip = torch.rand(b, generator=gen, device=dev).to(x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.random_phase:
            phi = (torch.rand(b, generator=gen, device=dev) * (2 * math.pi)).to(x.device)
            co, si = phi.cos()[:, None, None], phi.sin()[:, None, None]
            re, im = x[:, 0], x[:, 1]
            x = torch.stack([co * re - si * im, si * re + co * im], dim=1)
        return x

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> dict:
        import torch

        try:
            with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available()
                                       else []):
                return self._run()
        finally:
            if self.history is not None:
                self.history.close()

    def scalar(self, name: str, step: int, value: float) -> None:
        """A scalar for the live curves (an event) and for the run's history file (``run_history``)."""
        self.ctx.scalar(name, step, value)
        if self.history is not None:
            self.history.write(name, step, value)

    def _run(self) -> dict:
        import torch
        import torch.distributed as tdist
        from torch.utils.data import DistributedSampler

        from app.engine.devices import autocast_dtype
        from app.engine.nets.unet import UNet, count_parameters

        spec, dist = self.spec, self.dist
        dev = self._device()
        self.device = dev
        if spec.precision == "fp16" and dev.type != "cuda":
            raise UserError("precision fp16 needs a CUDA GPU; use bf16 or fp32 on this device")
        if spec.precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError("this GPU does not support bf16; use fp16 or fp32")
        self._load_data()
        process = build_process(spec)
        self.process = process
        net_cfg = build_net_config(spec, self.image_size, self.num_classes, self.channels)
        net_cfg.check()

        torch.manual_seed(spec.seed)  # inside fork_rng: initialisation and dropout only
        net = UNet(net_cfg).to(dev)
        ema = EMA(net, spec.ema_decay)
        model = net
        if dist.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(net, device_ids=[dev.index] if dev.type == "cuda" else None)
        opt = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)

        n_train = len(self.train_x)
        sampler = DistributedSampler(range(n_train), num_replicas=dist.world, rank=dist.rank, shuffle=True,
                                     seed=spec.seed, drop_last=True)
        micro_per_epoch = len(sampler) // spec.batch_size
        steps_per_epoch = micro_per_epoch // spec.grad_accum
        if steps_per_epoch < 1:
            raise UserError(
                f"dataset {spec.dataset!r} has {n_train} training images, fewer than one optimizer step needs "
                f"(batch_size {spec.batch_size} x grad_accum {spec.grad_accum} x {dist.world} process(es))"
            )
        total_steps = spec.epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda_factory(spec.warmup_steps, total_steps,
                                                                          spec.lr_schedule))
        scaler = torch.amp.GradScaler("cuda") if spec.precision == "fp16" else None
        gen = torch.Generator(device=dev if dev.type == "cuda" else "cpu")
        gen.manual_seed(_seed(spec.seed, dist.rank))
        pos = _Position()

        if spec.resume:
            self._restore(net, ema, opt, sched, scaler, gen, pos)
        elif dist.main:
            rec = self.ws.create_run(spec.process, spec.model_dump(mode="json"), dataset=spec.dataset)
            self.run_id, self.run_dir = rec.id, rec.path
        if dist.active:  # every rank learns the run id chosen by rank 0
            box = [self.run_id]
            tdist.broadcast_object_list(box, src=0)
            self.run_id = box[0]
        if dist.main:
            self.ws.update_run(self.run_id, state="running")
            self.ctx.artifact("run", self.run_dir)
            self.history = ScalarLog(self.run_dir, warn=lambda text: self.log(text, "warning"))
            self.log(
                f"run {self.run_id}: {process!r}, U-Net {count_parameters(net) / 1e6:.2f} M parameters, "
                f"{n_train} {'complex ' if self.complex else ''}images at {self.data_size}x{self.data_size}"
                + (f" (random {self.image_size}x{self.image_size} crops)" if self.image_size < self.data_size else "")
                + (", flips" if spec.hflip else "") + (", random global phase" if self.random_phase else "")
                + f", {steps_per_epoch} steps/epoch, "
                f"{spec.epochs} epochs on {dev}" + (f" x {dist.world} processes" if dist.active else "")
            )
            self.log(self.val_note)
        max_total = min(total_steps, spec.max_steps or total_steps)
        amp_dtype = autocast_dtype(spec.precision, dev)  # "auto": bf16 where the device runs it natively
        if dist.main and spec.precision == "auto":
            self.log(f"precision auto: {'bf16 autocast' if amp_dtype is not None else 'fp32'} on {dev.type}")
        self.objs = dict(net=net, ema=ema, opt=opt, sched=sched, scaler=scaler, gen=gen)
        progress_total = max_total
        last_loss = float("nan")
        saved_at_step = -1

        try:
            while pos.epoch < spec.epochs and pos.step < max_total:
                sampler.set_epoch(pos.epoch)
                order = torch.tensor(list(iter(sampler)), dtype=torch.long)
                net.train()
                while pos.batch < steps_per_epoch and pos.step < max_total:
                    stop = self.ctx.should_stop()
                    if stop and not dist.active:
                        raise JobCancelled()
                    opt.zero_grad(set_to_none=True)
                    loss_sum = torch.zeros((), device=dev)
                    batch_ids = []
                    for a in range(spec.grad_accum):
                        m = pos.batch * spec.grad_accum + a
                        ids = order[m * spec.batch_size : (m + 1) * spec.batch_size]
                        batch_ids.append(ids)
                        x = self._augment(self.train_x[ids], gen)
                        y = None
                        if self.num_classes:
                            y = self.train_y[ids].to(dev)
                            # label dropout -> null class (Ho & Salimans 2022, Algorithm 1)
                            u = torch.rand(len(ids), generator=gen, device=gen.device).to(dev)
                            y = torch.where(u < spec.label_dropout, torch.full_like(y, self.num_classes), y)
                        sync_ctx = (model.no_sync() if dist.active and a < spec.grad_accum - 1
                                    else contextlib.nullcontext())
                        with sync_ctx, torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                            out = process.loss(model, x, y, generator=gen)
                        loss = out.loss / spec.grad_accum
                        (scaler.scale(loss) if scaler else loss).backward()
                        loss_sum += out.loss.detach()
                    step_loss = loss_sum / spec.grad_accum
                    flags = torch.tensor([float(stop), float(not torch.isfinite(step_loss))], device=dev)
                    if dist.active:
                        tdist.all_reduce(flags, op=tdist.ReduceOp.MAX)
                    if flags[0] > 0:
                        raise JobCancelled()
                    if flags[1] > 0:
                        self._fail_nonfinite(float(step_loss), pos, torch.cat(batch_ids))
                    if scaler:
                        scaler.unscale_(opt)
                    if spec.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(net.parameters(), spec.grad_clip)
                    if scaler:
                        scaler.step(opt)
                        scaler.update()
                    else:
                        opt.step()
                    sched.step()
                    ema.update(net)
                    pos.step += 1
                    pos.batch += 1
                    last_loss = float(step_loss)
                    pos.losses.append(last_loss)
                    if dist.main:
                        if pos.step % spec.log_every == 0:
                            self.scalar("loss", pos.step, float(np.mean(pos.losses)))
                            self.scalar("lr", pos.step, sched.get_last_lr()[0])
                            pos.losses = []
                        self.ctx.progress(pos.step, progress_total, f"epoch {pos.epoch + 1}/{spec.epochs}")
                if pos.batch >= steps_per_epoch:
                    pos.epoch += 1
                    pos.batch = 0
                    if dist.main:
                        self._epoch_end(pos, last_loss)
                    if (spec.checkpoint_every and pos.epoch % spec.checkpoint_every == 0) or pos.epoch == spec.epochs:
                        self._save(pos, last_loss)  # every rank: the generator states are gathered
                        saved_at_step = pos.step
            if saved_at_step != pos.step:
                self._save(pos, last_loss)
        except JobCancelled:
            self._save(pos, last_loss)
            if dist.main:
                self.ws.update_run(self.run_id, state="stopped")
                self.log(f"stopped at step {pos.step}; checkpoint {self.last_checkpoint} (resume with --resume "
                         f"{self.run_id})")
            raise
        except UserError:
            raise  # already recorded (non-finite loss) or raised before anything ran
        except BaseException as exc:  # a crash: the run is not left 'running'; its checkpoints stay
            if dist.main and self.run_id:
                self.ws.update_run(self.run_id, state="failed", meta={"error": f"{type(exc).__name__}: {exc}"})
            raise
        finally:
            if dist.active:
                try:
                    tdist.barrier()
                except Exception:
                    pass
        seconds = time.perf_counter() - self.t0
        if dist.main:
            self.ws.update_run(self.run_id, state="done", meta={"finished": time.time()})
        return {
            "run": self.run_id, "final_loss": last_loss, "epochs": pos.epoch, "steps": pos.step,
            "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None, "seconds": round(seconds, 3),
            "images_per_second": round(pos.step * spec.batch_size * spec.grad_accum * dist.world / max(seconds, 1e-9), 2),
        }

    # -- pieces of the loop ----------------------------------------------------------------
    def _fail_nonfinite(self, value: float, pos: _Position, ids) -> None:
        import torch

        bad_data = ""
        batch = self.train_x[ids]
        if not bool(torch.isfinite(batch).all()):
            bad = ids[~torch.isfinite(batch).flatten(1).all(1)]
            cache_rows = [int(self.train_index[i]) for i in bad[:5]]
            bad_data = (f" The batch holds non-finite pixel values: the dataset cache {self.dataset.path} is "
                        f"corrupt (images {cache_rows}); ingest the dataset again.")
        good = self.last_checkpoint or self._latest_checkpoint_path()
        kept = f"The last good checkpoint is kept: {good}." if good else "No checkpoint had been written yet."
        msg = (f"training stopped: the loss became {value} at step {pos.step + 1} (epoch {pos.epoch + 1}) of run "
               f"{self.run_id}.{bad_data} {kept} Try a lower learning rate, gradient clipping or fp32, then "
               f"resume with --resume {self.run_id}.")
        if self.dist.main:
            self.ws.update_run(self.run_id, state="failed", meta={"error": msg, "step": pos.step})
        raise UserError(msg)

    def _latest_checkpoint_path(self) -> Path | None:
        if self.run_dir is None:
            return None
        folders = list_checkpoint_folders(self.run_dir)
        return folders[-1] if folders else None

    def _meta(self, pos: _Position, loss: float) -> dict:
        import torch

        from app.engine.nets.unet import count_parameters

        return {
            "run": self.run_id, "epoch": pos.epoch, "step": pos.step, "batch_in_epoch": pos.batch,
            "loss": loss if math.isfinite(loss) else None, "class_names": self.class_names,
            "num_classes": self.num_classes, "image_size": self.image_size, "channels": self.channels,
            "complex": self.complex, "complex_headroom": self.complex_headroom,
            "dataset": self.spec.dataset, "data_hash": self.data_hash, "process": self.process.config(),
            "net": self.objs["net"].config.model_dump(mode="json"),
            "parameters": count_parameters(self.objs["net"]), "world_size": self.dist.world,
            "created": time.time(), "torch": torch.__version__,
        }

    def _save(self, pos: _Position, loss: float) -> None:
        """Write a checkpoint (rank 0). Called on every rank: generator states are gathered first."""
        import torch

        o = self.objs
        generator_states = self._gather_generator_states()
        if not self.dist.main:
            return
        mid = pos.batch != 0
        name = checkpoint_name(pos.epoch, pos.step, mid)
        state = {
            "step": pos.step, "epoch": pos.epoch, "batch_in_epoch": pos.batch, "ema_updates": o["ema"].updates,
            "optimizer": o["opt"].state_dict(), "scheduler": o["sched"].state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "noise_generators": generator_states,
            "pending_losses": torch.tensor(pos.losses, dtype=torch.float64),
        }
        if o["scaler"] is not None:
            state["scaler"] = o["scaler"].state_dict()
        try:
            folder = write_checkpoint(self.run_dir / "checkpoints" / name, net=o["net"], ema_net=o["ema"].net,
                                      state=state, spec=self.spec, meta=self._meta(pos, loss))
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
                raise
            kept = f"the last good checkpoint, {self.last_checkpoint.name}, is kept" if self.last_checkpoint else \
                "no checkpoint of this run was written yet"
            try:  # resumable; on a disk too full for the registry's few bytes the row says "running" still
                self.ws.update_run(self.run_id, state="stopped", meta={"error": "the disk is full"})
            except Exception:
                pass
            raise UserError(f"the disk is full (no space left on device) while writing checkpoint {name} of run "
                            f"{self.run_id}. {kept[0].upper()}{kept[1:]}: free some space and continue with "
                            f"radsynth train --resume {self.run_id}") from None
        self.last_checkpoint = folder
        if name not in self.checkpoints:
            self.checkpoints.append(name)
        self.ws.update_run(self.run_id, meta={"epoch": pos.epoch, "step": pos.step,
                                              "loss": loss if math.isfinite(loss) else None,
                                              "checkpoints": self.checkpoints, "last_checkpoint": name})
        self.ctx.artifact("checkpoint", folder)

    def _gather_generator_states(self) -> list:
        g = self.objs["gen"]
        state = g.get_state()
        if not self.dist.active:
            return [state]
        import torch.distributed as tdist

        states = [None] * self.dist.world
        tdist.all_gather_object(states, state)
        return states

    def _restore(self, net, ema, opt, sched, scaler, gen, pos: _Position) -> None:
        import torch

        folders = list_checkpoint_folders(self.run_dir)
        if not folders:
            raise UserError(f"run {self.run_id!r} has no checkpoint to resume from in {self.run_dir / 'checkpoints'}")
        folder = folders[-1]
        net.load_state_dict(read_state_dict(folder / MODEL_FILE))
        ema.net.load_state_dict(read_state_dict(folder / EMA_FILE))
        try:
            state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise UserError(f"checkpoint file {folder / STATE_FILE} is missing: cannot resume exactly") from None
        except Exception as exc:
            raise UserError(f"checkpoint file {folder / STATE_FILE} is unreadable ({exc})") from None
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("data_hash") != self.data_hash:
            self.log(f"the dataset {self.spec.dataset!r} changed since checkpoint {folder.name} was written "
                     "(its content hash differs)", "warning")
        if int(meta.get("world_size", 1)) != self.dist.world:
            self.log(f"resuming a run trained on {meta.get('world_size')} process(es) on {self.dist.world}: "
                     "the data order differs from an uninterrupted run", "warning")
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        ema.updates = int(state["ema_updates"])
        torch.set_rng_state(state["rng_cpu"])
        if torch.cuda.is_available() and state.get("rng_cuda"):
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        gens = state["noise_generators"]
        if self.dist.rank < len(gens):
            gen.set_state(gens[self.dist.rank])
        pos.step, pos.epoch, pos.batch = int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"])
        pos.losses = [float(v) for v in state.get("pending_losses", torch.zeros(0)).tolist()]
        self.last_checkpoint = folder
        self.checkpoints = [f.name for f in folders]
        self.log(f"resuming run {self.run_id} from {folder.name} (epoch {pos.epoch}, step {pos.step})")

    def _epoch_end(self, pos: _Position, loss: float) -> None:
        spec = self.spec
        self.ws.update_run(self.run_id, meta={"epoch": pos.epoch, "step": pos.step,
                                              "loss": loss if math.isfinite(loss) else None})
        if spec.val_every and pos.epoch % spec.val_every == 0:
            self.validate(pos)
        if spec.preview_every and pos.epoch % spec.preview_every == 0:
            self.preview(pos)

    def validation_times(self):
        """The noise levels of the validation loss: evenly spread training levels / times."""
        import torch

        p, k = self.process, self.spec.val_levels
        if p.name == "ncsn":
            lt = p.level_times()
            idx = torch.linspace(0, len(lt) - 1, min(k, len(lt))).round().long()
            return lt[idx]
        t = p.t_min + (p.t_max - p.t_min) * (torch.arange(k, dtype=torch.float32) + 0.5) / k
        if p.name == "ddpm":
            t = torch.unique(p.t_of_index(p.index_of_t(t)))
        return t.flip(0)

    def validate(self, pos: _Position) -> dict:
        """Loss of the EMA weights at fixed noise levels on fixed images and noise; Scalars val_loss/..."""
        import torch

        net = self.objs["ema"].net
        net.eval()
        dev = self.device
        results = {}
        with torch.no_grad():
            for k, t in enumerate(self.validation_times()):
                g = torch.Generator().manual_seed(_seed(self.spec.seed, 7919, k))
                total, n = 0.0, 0
                for i in range(0, len(self.val_x), self.spec.batch_size):
                    x = self.val_x[i : i + self.spec.batch_size].to(dev)
                    y = self.val_y[i : i + len(x)].to(dev) if self.num_classes else None
                    out = self.process.loss(net, x, y, generator=g, t=torch.full((len(x),), float(t), device=dev))
                    total += float(out.per_sample.sum())
                    n += len(x)
                _, sigma = self.process.alpha_sigma(t.reshape(1))
                results[f"val_loss/sigma={float(sigma[0]):.3g}"] = total / max(n, 1)
        for name, v in results.items():
            self.scalar(name, pos.step, v)
        mean = float(np.mean(list(results.values())))
        self.scalar("val_loss", pos.step, mean)
        self.log(f"epoch {pos.epoch}: val_loss {mean:.4f} (" + ", ".join(
            f"{k.split('/')[1]}: {v:.3g}" for k, v in results.items()) + ")")
        return results

    def preview(self, pos: _Position) -> None:
        """A grid of samples from the EMA weights with a fixed seed (part B's DDIM sampler)."""
        try:
            from app.engine.sampling.api import generate
        except ImportError as exc:
            if not self.preview_warned:
                self.log(f"no preview samples: the samplers are not available ({exc})", "warning")
                self.preview_warned = True
            return
        from app.engine.imaging import make_grid, save_png

        spec = self.spec
        labels = [i % self.num_classes for i in range(spec.preview_n)] if self.num_classes else None
        try:
            images = generate((self.objs["ema"].net, self.process), n=spec.preview_n, sampler="ddim",
                              steps=spec.preview_steps, seed=spec.seed, class_labels=labels, guidance=0.0,
                              batch_size=spec.preview_n, device=self.device)
        except UserError as exc:
            self.log(f"preview at epoch {pos.epoch} failed: {exc}", "warning")
            return
        if self.complex:
            from app.engine.data.preprocess import magnitude_display

            images = magnitude_display(images, self.complex_headroom)
        grid = make_grid(images[:, :1], ncol=int(math.ceil(math.sqrt(spec.preview_n))))
        self.ctx.image("preview", grid, "grid")
        folder = self.run_dir / "previews"
        folder.mkdir(exist_ok=True)
        path = save_png(folder / f"epoch-{pos.epoch:04d}.png", grid)
        self.ctx.artifact("figure", path)


@register(TrainSpec)
def run_train(spec: TrainSpec, ctx: JobContext) -> dict:
    import torch

    from app.engine.jobs import cpu_threads_from_env

    cpu_threads_from_env()
    dist = DistInfo.from_env()
    if spec.num_gpus > 1 and not dist.active:
        raise UserError(
            f"num_gpus={spec.num_gpus}: launch data-parallel training with torchrun, e.g. "
            f"torchrun --nproc_per_node {spec.num_gpus} -m app.cli train ... (one process per GPU)"
        )
    if dist.active and dist.world != spec.num_gpus and spec.num_gpus != 1:
        raise UserError(f"num_gpus={spec.num_gpus} but torchrun started {dist.world} processes")
    with process_group(dist, cuda=torch.cuda.is_available() and spec.device != "cpu"):
        return Trainer(spec, ctx, dist).run()
