"""AppContext: what every panel is constructed with (workspace, job manager, settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class AppContext:
    """Panels are built as ``SomePanel(ctx)`` and reach the rest of the app only through this.

    - ``workspace``: app.engine.store.Workspace (datasets, runs, jobs, studies registry)
    - ``jobs``: app.workers.manager.JobManager — ``jobs.submit(spec) -> JobHandle`` runs any engine
      job on the current transport (local thread or remote server) and lists it in the Jobs dock;
      ``jobs.datasets_changed`` says that a job added or replaced datasets (lists of datasets re-read then)
    - ``settings``: a QSettings for persisted choices
    - ``main_window``: the QMainWindow (for dialogs and status messages), may be None in tests
    """

    workspace: Any
    jobs: Any
    settings: Any = None
    main_window: Any = None
