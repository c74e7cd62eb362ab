"""Samplers at equal quality: network evaluations (NFE) each sampler needs to reach 1000-step ancestral sampling.

One trained model (the ``ddpm-28-cond-cpu`` preset on PneumoniaMNIST, trained by
``bench_sample_quality.py``'s path, or an existing run with ``--run``), the same class labels and
the same seeds (image i starts from the same prior draw under every sampler). Ours are the
product's samplers through ``sampling.api.generate_with_info``; the anchor is diffusers'
``DDIMScheduler``, ``DPMSolverMultistepScheduler`` (2M and 3M) and ``UniPCMultistepScheduler``
wrapped around the same network as an epsilon predictor (our ``Denoiser`` gives eps_hat at the
scheduler's timestep; the schedulers get the model's own betas).

Quality is the product's own evaluation (``app.engine.evaluation``): a classifier trained on the real
training images (``utility.train_classifier``, its settings fixed in advance) gives
- class agreement: the share of generated images it assigns to the class they were conditioned on
  (ceiling: its accuracy on the real validation images; on the test images too), and
- FID with the domain extractor (its penultimate layer, ``metrics.features``) against the real
  training images (the set the model learnt; floor: as many real validation images, same classes,
  against the same reference). PneumoniaMNIST's test split is shifted from its train / val splits in
  these features (mean feature norm 9.8 against 13.0 and 12.8, trace of the covariance 125 against 193
  and 194), so the test images' FID is printed beside the floor but is no floor.

"Reaching the reference", fixed before the run: at an NFE a sampler reaches 1000-step ancestral when
its class agreement is at least the reference's minus one standard error of the reference
(binomial, sqrt(p (1 - p) / n)) AND its FID is at most the reference's plus one bootstrap standard
deviation of the reference's FID (200 resamples of the reference's images, the real side fixed).
For each sampler the table gives the smallest NFE of the list that reaches it ("-" for none).

    .venv/bin/python benchmarks/bench_sampler_nfe.py --workspace /tmp/nfe-ws            # trains first
    .venv/bin/python benchmarks/bench_sampler_nfe.py --workspace /tmp/nfe-ws --run RUN  # an existing run

Defaults: 50 images per class (100) for every sampler and for the 1000-step ancestral reference
(100 000 network evaluations: the longest part of the run), NFE 5, 8, 10, 15, 20. Sampled images are
kept in WORKSPACE/bench_sampler_nfe/RUN (and the classifier), so the sampling can be split over
processes (``--only``, ``--no-reference``, ``--sample-only``) and the table made again at no cost.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_sample_quality as BSQ  # the dataset, the preset and the training path

#: ours: (label, sampler name, options); NFE = steps for all of them
OURS = [
    ("ours dpmpp2m", "dpmpp2m", {}),
    ("ours dpmpp3m", "dpmpp3m", {}),
    ("ours unipc (order 2)", "unipc", {}),
    ("ours unipc order 3", "unipc", {"order": 3}),
]

#: the anchor: (label, diffusers scheduler class name, config beyond the model's betas); defaults otherwise
DIFFUSERS = [
    ("diffusers DDIM", "DDIMScheduler", {}),
    ("diffusers DPM-Solver++ 2M", "DPMSolverMultistepScheduler", {}),
    ("diffusers DPM-Solver++ 3M", "DPMSolverMultistepScheduler", {"solver_order": 3}),
    ("diffusers UniPC (order 2)", "UniPCMultistepScheduler", {}),
    ("diffusers UniPC order 3", "UniPCMultistepScheduler", {"solver_order": 3}),
    # x0 clipped to [-1, 1] at every step, as ours do by default (dynamic thresholding with sample_max_value 1
    # is static clipping), and the start at lambda = -5.1 that diffusers recommends for the cosine schedule
    ("diffusers DPM-Solver++ 2M thresholding", "DPMSolverMultistepScheduler", {"thresholding": True}),
    ("diffusers DPM-Solver++ 2M thr. lambda_min -5.1", "DPMSolverMultistepScheduler",
     {"thresholding": True, "lambda_min_clipped": -5.1}),
    ("diffusers UniPC (order 2) thresholding", "UniPCMultistepScheduler", {"thresholding": True}),
    # our log-SNR grid given to diffusers (``set_timesteps(timesteps=...)``): the same solver on the same grid.
    # (diffusers' own use_lu_lambdas / use_karras_sigmas span the cosine schedule's whole range, lambda down to
    # -9.6, and repeat timesteps there, 999, 999, 998, ..., which its step counter does not survive: IndexError.)
    ("diffusers DPM-Solver++ 2M, our log-SNR grid", "DPMSolverMultistepScheduler", {"grid_of": "dpmpp2m"}),
    ("diffusers DPM-Solver++ 3M, our log-SNR grid", "DPMSolverMultistepScheduler", {"solver_order": 3,
                                                                                    "grid_of": "dpmpp3m"}),
]


def diffusers_sample(model, scheduler_name: str, config: dict, nfe: int, labels: list[int], seed: int) -> np.ndarray:
    """Images from a diffusers scheduler around our network: eps_hat at the scheduler's timestep k
    (our time t = (k + 1) / T), the same prior draw per image as ``generate`` (``ImageNoise``)."""
    import diffusers

    from app.engine.sampling.api import make_sampler
    from app.engine.sampling.base import Denoiser, ImageNoise

    net, process = model.net, model.process
    config = dict(config)
    grid_of = config.pop("grid_of", None)
    sched = getattr(diffusers, scheduler_name)(num_train_timesteps=process.T, trained_betas=process.betas.double().numpy(),
                                               prediction_type="epsilon", **config)
    if grid_of:  # our sampler's evaluation times as diffusers timesteps (t = (k + 1) / T)
        sched.set_timesteps(timesteps=[round(t * process.T) - 1 for t in make_sampler(grid_of, nfe).times(process)])
    else:
        sched.set_timesteps(nfe)
    shape = (model.channels, model.image_size, model.image_size)
    x = ImageNoise(seed, range(len(labels))).prior(process, shape)
    den = Denoiser(net.eval(), process, torch.tensor(labels, dtype=torch.long))
    with torch.inference_mode():
        for k in sched.timesteps:
            eps = den(x, (int(k) + 1) / process.T).eps
            x = sched.step(eps, k, x).prev_sample
    assert den.n_evals == nfe, (scheduler_name, den.n_evals, nfe)
    return x.clamp(-1, 1).numpy()


def fid_bootstrap_sd(ext_feats: np.ndarray, ref_stats, n_boot: int, seed: int) -> float:
    from app.engine.metrics.distribution import frechet_distance, gaussian_stats

    rng = np.random.default_rng(seed)
    vals = [frechet_distance(*gaussian_stats(ext_feats[rng.integers(0, len(ext_feats), len(ext_feats))]), *ref_stats)
            for _ in range(n_boot)]
    return float(np.std(vals, ddof=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workspace", type=Path, required=True, help="workspace holding (or to hold) the dataset and run")
    p.add_argument("--run", default=None, help="an existing run of the workspace (default: train one first)")
    p.add_argument("--epochs", type=int, default=12, help="training epochs when training (bench_sample_quality's default)")
    p.add_argument("--per-class", type=int, default=50, help="images per class for every sampler and the reference")
    p.add_argument("--nfe", default="5,8,10,15,20", help="network evaluations to try, comma separated")
    p.add_argument("--reference-steps", type=int, default=1000)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", default="", help="comma-separated substrings: sample only the samplers whose label has one")
    p.add_argument("--no-reference", action="store_true", help="do not sample the reference")
    p.add_argument("--sample-only", action="store_true",
                   help="only fill the image cache (to split the sampling over processes), no classifier, no table")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not BSQ.DATA.exists():
        raise SystemExit(f"{BSQ.DATA} is absent")
    nfes = [int(v) for v in args.nfe.split(",") if v.strip()]

    from app.engine.data.cache import ImageDataset
    from app.engine.data.ingest import IngestSpec
    from app.engine.evaluation.utility import predict_proba, resnet18_small, train_classifier
    from app.engine.metrics.distribution import frechet_distance, gaussian_stats
    from app.engine.metrics.features import get_extractor
    from app.engine.sampling.api import generate_with_info
    from app.engine.store import Workspace
    from app.engine.training.checkpoints import load_checkpoint
    from app.engine.training.loop import TrainSpec

    ws = Workspace.open(args.workspace)
    if not ws.has_dataset(BSQ.DATASET):
        BSQ.run_job(IngestSpec(source=str(BSQ.DATA), name=BSQ.DATASET, size=28, normalize="bit-depth"), ws)
    ds = ImageDataset.from_workspace(ws, BSQ.DATASET)
    run_id = args.run
    if run_id is None:
        res, _ = BSQ.run_job(TrainSpec(dataset=BSQ.DATASET, preset=BSQ.PRESET, device="cpu", seed=0, epochs=args.epochs),
                             ws, log_every=20)
        run_id = res["run"]
    model = load_checkpoint(run_id, ws)
    print(f"model: run {run_id} ({BSQ.PRESET}, {model.process}), "
          f"{sum(q.numel() for q in model.net.parameters()) / 1e6:.2f} M parameters", flush=True)
    k = args.per_class
    labels = [0] * k + [1] * k
    y = np.array(labels)

    # -- 1. sampling (each cell kept in the workspace) ------------------------------------------
    cache = args.workspace / "bench_sampler_nfe" / run_id
    cache.mkdir(parents=True, exist_ok=True)

    def cached(key: str, make) -> tuple[np.ndarray, float]:
        """Images of one (sampler, NFE) and the seconds they took, kept in the workspace so that a rerun, or
        a second process filling other cells, samples nothing twice (same model, labels and seed). Delete
        the folder after changing a sampler."""
        f = cache / f"{key.replace(' ', '_').replace('/', '_')}_n{len(labels)}.npz"
        if f.exists():
            with np.load(f) as z:
                return z["images"], float(z["seconds"])
        t0 = time.perf_counter()
        imgs = make()
        sec = time.perf_counter() - t0
        np.savez(f, images=imgs, seconds=sec)
        return imgs, sec

    samplers = [(lbl, "ours", name, opts) for lbl, name, opts in OURS]
    samplers += [(lbl, "diffusers", name, cfg) for lbl, name, cfg in DIFFUSERS]
    if args.only:
        keys = [s.strip() for s in args.only.split(",") if s.strip()]
        samplers = [s for s in samplers if any(key in s[0] for key in keys)]
    cells: dict[str, dict[int, tuple[np.ndarray, float]]] = {lbl: {} for lbl, *_ in samplers}
    for nfe in nfes:  # the cheap cells of every sampler first
        for lbl, side, name, opts in samplers:
            if side == "ours":
                def make(name=name, opts=opts, nfe=nfe):
                    imgs, info = generate_with_info(model, len(labels), name, steps=nfe, seed=1, class_labels=labels,
                                                    batch_size=len(labels), **opts)
                    assert info.network_evals == nfe
                    return imgs
            else:
                def make(name=name, opts=opts, nfe=nfe):
                    return diffusers_sample(model, name, opts, nfe, labels, seed=1)
            cells[lbl][nfe] = cached(f"{lbl}_nfe{nfe}", make)
            print(f"  sampled {lbl} NFE {nfe} ({cells[lbl][nfe][1]:.0f} s)", flush=True)
    reference = None
    if not args.no_reference:
        reference = cached(f"ancestral{args.reference_steps}", lambda: generate_with_info(
            model, len(labels), "ancestral", steps=args.reference_steps, seed=1, class_labels=labels,
            batch_size=len(labels))[0])
        print(f"  sampled the reference: ancestral {args.reference_steps} steps ({reference[1]:.0f} s)", flush=True)
    if args.sample_only:
        return

    # -- 2. the product's evaluation: classifier on real images, class agreement, domain FID -----
    xtr, ytr = ds.images("train"), ds.labels("train")
    xva, yva = ds.images("val"), ds.labels("val")
    xte, yte = ds.images("test"), ds.labels("test")
    t0 = time.perf_counter()
    clf_file = cache / "classifier.pt"
    if clf_file.exists():
        clf = resnet18_small(2)
        clf.load_state_dict(torch.load(clf_file))
        clf.eval()
    else:
        clf = train_classifier(xtr, ytr, seed=0)  # the evaluate job's classifier and settings (domain extractor)
        torch.save(clf.state_dict(), clf_file)
    ext = get_extractor("domain", model=clf)
    ceiling = float((predict_proba(clf, xva).argmax(1) == yva).mean())
    ceiling_test = float((predict_proba(clf, xte).argmax(1) == yte).mean())
    ref_stats = gaussian_stats(ext(xtr))
    rng = np.random.default_rng(0)
    floor_idx = np.concatenate([rng.choice(np.flatnonzero(yva == c), k, replace=False) for c in (0, 1)])
    fid_floor = frechet_distance(*gaussian_stats(ext(xva[floor_idx])), *ref_stats)
    floor_idx = np.concatenate([rng.choice(np.flatnonzero(yte == c), k, replace=False) for c in (0, 1)])
    fid_floor_test = frechet_distance(*gaussian_stats(ext(xte[floor_idx])), *ref_stats)
    print(f"classifier (ResNet-18-small, 5 epochs, {len(xtr)} real training images; {time.perf_counter() - t0:.0f} s): "
          f"accuracy {ceiling:.3f} on the real val images, {ceiling_test:.3f} on the test images; domain-FID floor "
          f"({2 * k} real val images vs the {len(xtr)} training images) {fid_floor:.2f}, with test images "
          f"{fid_floor_test:.2f}", flush=True)

    def score(imgs: np.ndarray) -> tuple[dict, np.ndarray]:
        f = ext(imgs)
        return {"agreement": float((predict_proba(clf, imgs).argmax(1) == y).mean()),
                "fid": frechet_distance(*gaussian_stats(f), *ref_stats)}, f

    table = {lbl: {nfe: {**score(imgs)[0], "seconds": sec} for nfe, (imgs, sec) in row.items()}
             for lbl, row in cells.items()}
    if reference is None:
        return
    ref, ref_feats = score(reference[0])
    ref_se = float(np.sqrt(ref["agreement"] * (1 - ref["agreement"]) / len(labels)))
    ref_fid_sd = fid_bootstrap_sd(ref_feats, ref_stats, args.bootstrap, seed=0)
    agree_bar, fid_bar = ref["agreement"] - ref_se, ref["fid"] + ref_fid_sd
    for row in table.values():
        for r in row.values():
            r["reaches"] = bool(r["agreement"] >= agree_bar and r["fid"] <= fid_bar)

    print(f"\nmodel {run_id}; {len(labels)} images per sampler ({k} per class, seed 1: the same prior draws); "
          f"classifier accuracy (ceiling) {ceiling:.3f} on real val images ({ceiling_test:.3f} on test); domain-FID "
          f"floor (real val vs train, {len(labels)} images) {fid_floor:.2f} ({fid_floor_test:.2f} with test images)")
    print(f"reference ancestral {args.reference_steps} steps ({reference[1]:.0f} s): agreement {ref['agreement']:.3f} "
          f"(SE {ref_se:.3f}), domain-FID {ref['fid']:.2f} (bootstrap SD {ref_fid_sd:.2f}); "
          f"reaching it: agreement >= {agree_bar:.3f} and FID <= {fid_bar:.2f}")
    head = " ".join(f"{'NFE ' + str(n):>14s}" for n in nfes)
    print(f"{'sampler: agreement / domain-FID':44s} {head} {'NFE to reach':>13s}")
    best = {}
    for lbl, row in table.items():
        cells_txt = " ".join(f"{row[n]['agreement']:.3f}/{row[n]['fid']:6.2f}{'*' if row[n]['reaches'] else ' '}".rjust(14)
                             for n in nfes)
        reach = next((n for n in nfes if row[n]["reaches"]), None)
        best[lbl] = reach
        print(f"{lbl:44s} {cells_txt} {('-' if reach is None else str(reach)):>13s}")
    print("(* reaches the reference)")
    out = {"run": run_id, "n_per_sampler": len(labels), "ceiling_val": ceiling, "ceiling_test": ceiling_test,
           "fid_floor_val": fid_floor, "fid_floor_test": fid_floor_test,
           "reference": {**ref, "steps": args.reference_steps, "agreement_se": ref_se, "fid_bootstrap_sd": ref_fid_sd,
                         "seconds": reference[1]},
           "nfe_to_reach": best, "table": {lbl: {str(n): v for n, v in row.items()} for lbl, row in table.items()}}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps({"nfe_to_reach": best}))


if __name__ == "__main__":
    main()
