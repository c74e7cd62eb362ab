"""What to do next in each panel, read from the workspace: the hint strip above a panel.

``next_step(key, state)`` returns a ``NextStep`` (text, an optional button and the action it
runs) or None when the panel has what it needs. ``WorkspaceState.read(workspace, jobs)`` gathers
what the rules look at (datasets, generated sets, runs with a checkpoint, studies, jobs running),
cheap registry reads on the GUI thread. The main window shows the step in each panel's
``NextStepBar`` (``widgets/next_step.py``) and runs the action (``run_action``, below):

    datasets      no dataset:                make the demo dataset
    train         no run yet:                train the quick demo model (preset cpu-quickstart)
    generate      no checkpoint yet:         train the quick demo model (or: it is training)
    reconstruct   no source loaded:          load a demo slice (k-space simulated from a phantom)
    audit         no generated set:          generate images (or train first)
    study         no study:                  generate a synthetic set first, then create the study
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NextStep:
    text: str
    button: str | None = None
    action: str | None = None  # a MainWindow.run_next_step action name


@dataclass
class WorkspaceState:
    datasets: list[str] = field(default_factory=list)
    synthetic: list[str] = field(default_factory=list)
    runs: int = 0
    trained_runs: int = 0  # runs with at least one checkpoint
    studies: int = 0
    running: set[str] = field(default_factory=set)  # kinds of the active jobs
    recon_source: bool = False

    @classmethod
    def read(cls, workspace, jobs=None, recon_source: bool = False) -> WorkspaceState:
        s = cls(recon_source=recon_source)
        try:
            recs = workspace.datasets()
            s.datasets = [d.name for d in recs if not d.synthetic]
            s.synthetic = [d.name for d in recs if d.synthetic]
            runs = workspace.runs()
            s.runs = len(runs)
            s.trained_runs = sum(1 for r in runs if _has_checkpoint(r.path))
            s.studies = len(workspace.query("SELECT id FROM studies"))
        except Exception:  # a workspace being switched or a locked registry: no hint rather than a crash
            pass
        if jobs is not None:
            s.running = {h.kind for h in jobs.active()}
        return s


def _has_checkpoint(run_dir) -> bool:
    d = run_dir / "checkpoints"
    try:
        return d.is_dir() and any(d.iterdir())
    except OSError:
        return False


TRAIN_DEMO = NextStep("No trained model yet. The quick demo model trains a small DDPM on the demo phantoms "
                      "(preset cpu-quickstart, a few minutes on a CPU); its checkpoints then appear here.",
                      "Train the quick demo model", "train_demo")


def next_step(key: str, s: WorkspaceState) -> NextStep | None:
    if key == "datasets":
        if s.datasets or s.synthetic:
            return None
        if "demo" in s.running:
            return NextStep("Creating the demo dataset (synthetic brain-like MR phantoms)…")
        return NextStep("No dataset yet: import your images (File > Import dataset…) or make the demo dataset "
                        "of synthetic phantoms to try every panel.", "Make the demo dataset", "make_demo")
    if key == "train":
        if s.runs:
            return None
        if not s.datasets:
            return NextStep("Training needs a dataset: import one in Datasets first.", "Go to Datasets",
                            "show_datasets")
        if "train" in s.running:
            return None
        return NextStep("Next: train a model. The cpu-quickstart preset below trains the quick demo model in a "
                        "few minutes on a CPU; press Start training, or:", "Train the quick demo model", "train_demo")
    if key == "generate":
        if s.trained_runs:
            return None
        if "train" in s.running:
            return NextStep("A model is training (see Training and the Jobs dock); pick its run here once it has "
                            "saved a checkpoint, then press Generate.", "Go to Training", "show_train")
        return TRAIN_DEMO if s.datasets else NextStep("Generation needs a trained model, and training a dataset: "
                                                      "import one first.", "Go to Datasets", "show_datasets")
    if key == "reconstruct":
        if s.recon_source or not s.datasets:
            return None
        return NextStep("No source loaded: load a k-space file, or a demo slice (k-space simulated from a phantom "
                        "of the demo dataset), then press Reconstruct.", "Load a demo slice", "demo_slice")
    if key == "audit":
        if s.synthetic:
            return None
        if s.trained_runs:
            return NextStep("The audit compares a generated set with the set the model was trained on: generate "
                            "images first (Generation registers them as a synthetic dataset).", "Go to Generation",
                            "show_generate")
        return TRAIN_DEMO if s.datasets else None
    if key == "study":
        if s.studies:
            return None
        if not s.synthetic:
            return NextStep("A reader study mixes real and generated images: generate a synthetic set first, then "
                            "choose both below, name the study and press Create study.", "Go to Generation",
                            "show_generate")
        return NextStep("Choose a real set and a synthetic set under Design, name the study and press Create study; "
                        "then give each reader their session under Readers.")
    return None


# -- what the buttons do (MainWindow.run_next_step) ----------------------------------------------
def run_action(win, action: str):
    """What a next-step button of the main window ``win`` does; returns the job handle or panel it started
    or showed."""
    if action == "make_demo":
        win.create_demo()
        win.refresh_next_steps()
        return win.demo_handle
    if action == "train_demo":
        return train_quick_demo(win)
    if action == "demo_slice":
        return load_demo_slice(win)
    if action.startswith("show_"):
        return win.show_panel(action.removeprefix("show_"))
    raise ValueError(f"unknown next-step action {action!r}")


def _demo_or_first_dataset(win) -> str | None:
    """The demo dataset if the workspace has it, else its first real (not generated) dataset, else None."""
    from app.engine.specs.data import DEMO_NAME

    names = [d.name for d in win.workspace.datasets() if not d.synthetic]
    return DEMO_NAME if DEMO_NAME in names else (names[0] if names else None)


def train_quick_demo(win):
    """The quick demo model: the Training panel's cpu-quickstart preset on the demo dataset
    (or the first real dataset), started as a train job; the Training panel is shown."""
    panel = win.show_panel("train")
    if not hasattr(panel, "apply_preset") or getattr(panel, "form", None) is None:
        win.statusBar().showMessage("Training is not available in this build", 8000)
        return None
    dataset = _demo_or_first_dataset(win)
    if dataset is None:
        win.statusBar().showMessage("Import a dataset first (or make the demo dataset)", 8000)
        return None
    panel.apply_preset("cpu-quickstart")
    panel.form.set_values({"dataset": dataset})
    h = panel.start()
    win.refresh_next_steps()
    return h


def load_demo_slice(win):
    """Reconstruction's MRI source: an image of the demo dataset (or the first dataset) as fully
    sampled single-coil k-space, ready to reconstruct."""
    panel = win.show_panel("reconstruct")
    mri = getattr(panel, "mri", None)
    dataset = _demo_or_first_dataset(win)
    if mri is None or dataset is None:
        return None
    f = mri.form
    i = f.source_kind.findData("dataset")
    if i >= 0:
        f.source_kind.setCurrentIndex(i)
    mri.set_datasets([d.name for d in win.workspace.datasets() if not d.synthetic])
    f.dataset_combo.setCurrentText(dataset)
    return mri.use_dataset_image()
