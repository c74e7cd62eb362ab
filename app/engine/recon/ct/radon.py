"""CT projection: Radon transform, filtered back-projection, and a torch Radon operator with adjoint.

Baselines use scikit-image's ``radon`` / ``iradon`` (well-kept, ramp-filtered FBP with the usual
interpolation): ``sinogram(image, n_views)``, ``fbp(sino, angles)``, ``backprojection(sino, angles)``.
The score-based method needs the forward projection and its exact adjoint inside a loop of hundreds
of steps, on the GPU when there is one; ``RadonOp`` is a torch parallel-beam projector (rotate with
bilinear ``grid_sample``, sum along columns) whose adjoint is obtained by autograd, hence exact
(skimage's ``iradon(filter_name=None)`` is only approximately the adjoint of its ``radon``).
Images are (H, W) with H == W; only the inscribed circle is measured (``circle=True``).

Intensity convention: HU are mapped to ``mu = clip((HU + 1024) / 4096, 0, None)`` (0 = air,
0.25 = water, ~0.75 = dense bone) by ``hu_to_unit``, so metrics have a fixed data range meaning.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from app.engine.recon.linop import LinearOperator


def hu_to_unit(hu) -> np.ndarray:
    return np.clip((np.asarray(hu, np.float32) + 1024.0) / 4096.0, 0.0, None)


def unit_to_hu(x) -> np.ndarray:
    return np.asarray(x, np.float32) * 4096.0 - 1024.0


def view_angles(n_views: int) -> np.ndarray:
    """n equally spaced projection angles over [0, 180) degrees."""
    return np.linspace(0.0, 180.0, int(n_views), endpoint=False)


def circle_mask(n: int) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    c = (n - 1) / 2
    return ((yy - c) ** 2 + (xx - c) ** 2) <= (n / 2) ** 2


def sinogram(image, angles) -> np.ndarray:
    """Parallel-beam projections (detectors, views) of an image (skimage.transform.radon)."""
    from skimage.transform import radon

    img = np.asarray(image, np.float64) * circle_mask(image.shape[0])
    return radon(img, theta=angles, circle=True).astype(np.float32)


def fbp(sino, angles, filter_name: str = "ramp") -> np.ndarray:
    """Filtered back-projection (skimage.transform.iradon)."""
    from skimage.transform import iradon

    return iradon(np.asarray(sino, np.float64), theta=angles, filter_name=filter_name, circle=True).astype(np.float32)


def backprojection(sino, angles) -> np.ndarray:
    """Unfiltered back-projection, scaled to the image's mean (the naive baseline FBP must beat)."""
    from skimage.transform import iradon

    return iradon(np.asarray(sino, np.float64), theta=angles, filter_name=None, circle=True).astype(np.float32)


class RadonOp(LinearOperator):
    """Parallel-beam projector x (N, N) -> sinogram (views, N) in torch; adjoint by autograd.

    Rotation by bilinear ``grid_sample`` then a sum over rows (the line integrals, unit pixel
    spacing). Accepts a leading batch axis: (B, N, N) -> (B, views, N).
    """

    def __init__(self, n: int, angles_deg, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.n = int(n)
        self.angles = np.asarray(angles_deg, np.float64)
        # negative angles: the same orientation as skimage.transform.radon (sinogram(x, a).T)
        th = torch.as_tensor(-np.deg2rad(self.angles), dtype=torch.float32)
        cos, sin = torch.cos(th), torch.sin(th)
        # affine grids that rotate the image by each angle (one per view)
        theta = torch.zeros(len(th), 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        self.grid = F.affine_grid(theta, (len(th), 1, self.n, self.n), align_corners=False).to(self.device)
        self.support = torch.as_tensor(circle_mask(self.n), dtype=torch.float32, device=self.device)
        self.ishape = (self.n, self.n)
        self.oshape = (len(th), self.n)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.reshape(-1, self.n, self.n) * self.support
        views = self.grid.shape[0]
        out = []
        for im in batch:
            rot = F.grid_sample(im[None, None].expand(views, 1, -1, -1), self.grid, mode="bilinear",
                                padding_mode="zeros", align_corners=False)
            out.append(rot[:, 0].sum(dim=1))  # (views, N): line integrals along the rotated columns
        return torch.stack(out).reshape(*x.shape[:-2], views, self.n)

    def _forward(self, x):
        if torch.is_complex(x):
            return torch.complex(self._project(x.real), self._project(x.imag))
        return self._project(x.float())

    def _adjoint(self, y):
        if torch.is_complex(y):
            return torch.complex(self._adjoint(y.real), self._adjoint(y.imag))
        lead = y.shape[:-2]
        with torch.enable_grad():
            x = torch.zeros((*lead, self.n, self.n), device=y.device, requires_grad=True)
            (grad,) = torch.autograd.grad((self._project(x) * y.float()).sum(), x)
        return grad
