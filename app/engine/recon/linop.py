"""Linear operators with exact adjoints and composition, in torch (sigpy's ``Linop`` layer).

``A.forward(x)`` / ``A(x)`` maps the input space to the output space and ``A.adjoint(y)`` is its Hermitian
adjoint, so that ``<A x, y> == <x, A^H y>`` (complex inner product; tested for every operator and for
compositions). ``A.H`` is the adjoint as an operator, ``A * B`` the composition (``(A * B) x = A (B x)``),
``A + B`` the sum, ``c * A`` a scaled operator, ``Diagonal(w)`` a pointwise product. Operators work on complex
torch tensors (CPU or GPU) and also accept numpy arrays (returning numpy). The MRI operators (masked FFT,
SENSE, finite differences) are in ``recon.mri.operators``, the CT projector in ``recon.ct.radon``.
"""

from __future__ import annotations

import numpy as np
import torch


def _to_torch(x, device=None) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return (x if device is None else x.to(device)), False
    return torch.as_tensor(np.asarray(x, dtype=np.complex64), device=device), True


def _back(x: torch.Tensor, was_numpy: bool):
    return x.detach().cpu().numpy() if was_numpy else x


def inner(a, b) -> complex:
    """Complex inner product <a, b> = sum(conj(a) * b)."""
    if isinstance(a, torch.Tensor):
        return complex((a.conj() * b).sum())
    return complex(np.vdot(a, b))


class LinearOperator:
    """Base class: subclasses set ``ishape`` / ``oshape`` / ``device`` and implement ``_forward`` /
    ``_adjoint`` on torch tensors."""

    ishape: tuple[int, ...] = ()
    oshape: tuple[int, ...] = ()
    device: torch.device = torch.device("cpu")

    def forward(self, x):
        t, was_np = _to_torch(x, self.device)
        return _back(self._forward(t), was_np)

    def adjoint(self, y):
        t, was_np = _to_torch(y, self.device)
        return _back(self._adjoint(t), was_np)

    def normal(self, x):
        """A^H A x."""
        t, was_np = _to_torch(x, self.device)
        return _back(self._adjoint(self._forward(t)), was_np)

    __call__ = forward

    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- algebra -------------------------------------------------------------------------------
    @property
    def H(self) -> LinearOperator:  # noqa: N802 (the mathematicians' name, as sigpy has it)
        """The adjoint as an operator (``A.H.H`` is A)."""
        return Adjoint(self)

    def __mul__(self, other):
        if isinstance(other, LinearOperator):
            return Compose(self, other)
        if isinstance(other, (int, float, complex)):
            return Scaled(self, other)
        return NotImplemented

    def __rmul__(self, other):
        if isinstance(other, (int, float, complex)):
            return Scaled(self, other)
        return NotImplemented

    def __add__(self, other):
        if isinstance(other, LinearOperator):
            return Sum(self, other)
        return NotImplemented

    def norm_estimate(self, iterations: int = 20, seed: int = 0) -> float:
        """Largest singular value of A by power iteration on A^H A (for step sizes)."""
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.ishape, generator=g, dtype=torch.complex64).to(self.device)
        s = 1.0
        for _ in range(iterations):
            x = self._adjoint(self._forward(x))
            s = float(torch.linalg.vector_norm(x))
            x = x / max(s, 1e-30)
        return float(np.sqrt(s))


class Adjoint(LinearOperator):
    """A^H as an operator."""

    def __init__(self, A: LinearOperator):
        self.A = A
        self.ishape, self.oshape, self.device = A.oshape, A.ishape, A.device

    @property
    def H(self) -> LinearOperator:  # noqa: N802
        return self.A

    def _forward(self, x):
        return self.A._adjoint(x)

    def _adjoint(self, y):
        return self.A._forward(y)


class Compose(LinearOperator):
    """(A * B) x = A (B x); its adjoint is B^H A^H."""

    def __init__(self, A: LinearOperator, B: LinearOperator):
        if tuple(B.oshape) != tuple(A.ishape):
            raise ValueError(f"cannot compose: the inner operator gives {tuple(B.oshape)}, the outer takes "
                             f"{tuple(A.ishape)}")
        self.A, self.B = A, B
        self.ishape, self.oshape, self.device = B.ishape, A.oshape, A.device

    def _forward(self, x):
        return self.A._forward(self.B._forward(x))

    def _adjoint(self, y):
        return self.B._adjoint(self.A._adjoint(y))


class Sum(LinearOperator):
    """(A + B) x = A x + B x, for operators between the same spaces."""

    def __init__(self, A: LinearOperator, B: LinearOperator):
        if (tuple(A.ishape), tuple(A.oshape)) != (tuple(B.ishape), tuple(B.oshape)):
            raise ValueError("cannot add operators between different spaces")
        self.A, self.B = A, B
        self.ishape, self.oshape, self.device = A.ishape, A.oshape, A.device

    def _forward(self, x):
        return self.A._forward(x) + self.B._forward(x)

    def _adjoint(self, y):
        return self.A._adjoint(y) + self.B._adjoint(y)


class Scaled(LinearOperator):
    """(c A) x = c (A x); its adjoint is conj(c) A^H."""

    def __init__(self, A: LinearOperator, c: complex):
        self.A, self.c = A, c
        self.ishape, self.oshape, self.device = A.ishape, A.oshape, A.device

    def _forward(self, x):
        return self.c * self.A._forward(x)

    def _adjoint(self, y):
        return np.conj(self.c) * self.A._adjoint(y)


class Diagonal(LinearOperator):
    """Pointwise multiplication by fixed weights ``w`` (a coil map, a density compensation, a support)."""

    def __init__(self, weights, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        w, _ = _to_torch(weights, self.device)
        self.w = w
        self.ishape = self.oshape = tuple(w.shape)

    def _forward(self, x):
        return self.w * x

    def _adjoint(self, y):
        return self.w.conj() * y


class Identity(LinearOperator):
    def __init__(self, shape: tuple[int, ...], device: str | torch.device = "cpu"):
        self.ishape = self.oshape = tuple(shape)
        self.device = torch.device(device)

    def _forward(self, x):
        return x

    def _adjoint(self, y):
        return y
