"""Spec of the selftest job: a timed check of the compute device (and of cancellation)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.engine.specs.base import Spec


class SelfTestSpec(Spec):
    """Check the compute device: N timed matrix products, with progress and a preview image."""

    kind: Literal["selftest"] = "selftest"
    steps: int = Field(20, ge=1, le=100_000, description="number of steps")
    size: int = Field(64, ge=8, le=8192, description="matrix size")
    delay: float = Field(0.0, ge=0, le=60, description="seconds to sleep per step (to test cancellation)")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    fail_at: int = Field(-1, description="raise an error at this step (-1: never)")
    seed: int = 0
