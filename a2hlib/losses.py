"""Losses of ADSH, A²-Net and A²-Net++ (docs/METHOD.md §3), returned as a dict of named terms.

Explained, with the schedule plotted, in `notebooks/02_training.ipynb`.

With k bits, a batch of b images, n database items and codes B ∈ {±1}^{n×k}:

- hash   = (12/k) Σ_ij (k·S̃_ij − u_iᵀB_j)² / (b·n)
- quant  = (12/k) γ Σ_i ‖u_i − B_Ω(i)‖² / (b·n)
- rec    = MSE(x̂, x)                     (feature reconstruction through the tied decoder)
- dec    = mean((uᵀu − b·I)²) / (b·k)    (decorrelation of the k attribute dimensions)
- image  = MSE(Î, I in [0, 1])            (A²-Net++ self-consistency; the official code compares
                                          with the ImageNet-normalised input, we de-normalise first)

`codes_objective` is the objective J(B) that the discrete update of B minimises (METHOD §4.2), and
`phase2_from` the first outer iteration of phase 2 (§3.3); both are walked through in 02.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

TERMS = ("hash", "quant", "rec", "dec", "image")


def similarity_matrix(sample_labels: torch.Tensor, db_labels: torch.Tensor, soft: bool = True) -> torch.Tensor:
    """S (m×n): +1 where sample i and database item j share a label, else −1.

    Labels are 1-D class ids or 2-D multi-hot. With `soft` (the official ADSH_PyTorch rescaling,
    not in the ADSH paper): r = ΣS / Σ(1 − S), S̃ = S(1 + r) − r, so positives stay +1 and
    negatives become −P/N (P, N: numbers of positive and negative pairs), close to 0 for
    fine-grained sets with many classes.
    """
    if sample_labels.dim() == 1:
        same = sample_labels[:, None] == db_labels[None, :]
    else:
        same = (sample_labels.float() @ db_labels.float().t()) > 0
    s = same.float() * 2 - 1
    if soft:
        negatives = (1 - s).sum()
        if negatives > 0:
            r = s.sum() / negatives
            s = s * (1 + r) - r
    return s


@dataclass(frozen=True)
class LossWeights:
    """Weight of each term; a term with weight 0 is still computed (without gradient) for logging."""

    hash: float = 1.0
    quant: float = 1.0
    rec: float = 0.0
    dec: float = 0.0
    image: float = 0.0


def schedule(variant: str, phase: int) -> LossWeights:
    """The official two-phase schedule: phase 1 = hash + quant (A²-Net++: + 0.01·image);
    phase 2 adds rec + dec with weight 1 (A²-Net++: image weight 0.1). ADSH: hash + quant always."""
    if phase not in (1, 2):
        raise ValueError(f"phase must be 1 or 2, got {phase}")
    if variant == "adsh":
        return LossWeights()
    second = phase == 2
    image = (0.1 if second else 0.01) if variant == "a2netpp" else 0.0
    return LossWeights(rec=float(second), dec=float(second), image=image)


def phase2_from(outer_iterations: int, phase2_start: float = 0.5) -> int:
    """First outer iteration (0-based) of phase 2: ⌊T · phase2_start⌋, the official `it == max_iter // 2`
    for the default 0.5 (docs/METHOD.md §3.3; `notebooks/02_training.ipynb` marks it on the loss plot)."""
    if outer_iterations < 1 or not 0.0 <= phase2_start <= 1.0:
        raise ValueError(f"need outer_iterations ≥ 1 and 0 ≤ phase2_start ≤ 1, got {outer_iterations}, {phase2_start}")
    return math.floor(outer_iterations * phase2_start)


def hash_loss(u: torch.Tensor, B: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """(12/k) Σ_ij (k·S_ij − u_iᵀB_j)² / (b·n): u b×k, B n×k, S b×n (`notebooks/02_training.ipynb`)."""
    k = u.shape[1]
    return ((k * S - u @ B.t()) ** 2).sum() / (u.shape[0] * B.shape[0]) * 12 / k


def quantization_loss(u: torch.Tensor, B_batch: torch.Tensor, n: int, gamma: float) -> torch.Tensor:
    """(12/k) γ Σ_i ‖u_i − B_ω(i)‖² / (b·n): B_batch holds the batch images' own database rows."""
    k = u.shape[1]
    return ((u - B_batch) ** 2).sum() / (u.shape[0] * n) * gamma * 12 / k


def decorrelation_loss(u: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """‖uᵀu − b̄·I‖_F² / (b̄·k³): the k code dimensions of a batch uncorrelated and equally used.
    b̄ is `batch_size`, the configured batch size as in the official code (it differs from the
    rows of u only for a smaller last batch); None uses the rows of u."""
    b, k = u.shape
    b = b if batch_size is None else int(batch_size)
    eye = torch.eye(k, device=u.device, dtype=u.dtype)
    return F.mse_loss(u.t() @ u, b * eye) / b / k


def reconstruction_loss(reconstruction: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """‖x̂ − x‖² / (b·D): the appearance vector x rebuilt from u by the tied decoder, x̂ = Wᵀu."""
    return F.mse_loss(reconstruction, features)


def image_loss(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖Î − I‖² / (3·b·S²): the A²-Net++ generator's image against the input in [0, 1]
    (`notebooks/00_overview.ipynb` shows both)."""
    return F.mse_loss(image, target)


def codes_objective(B: torch.Tensor, U: torch.Tensor, sample_index: torch.Tensor, S: torch.Tensor,
                    gamma: float) -> torch.Tensor:
    """J(B) = ‖U Bᵀ − k·S‖_F² + γ‖B_Ω − U‖_F², the objective that the bit-wise update of the database
    codes minimises (docs/METHOD.md §4.2; `a2hlib.training.update_database_codes`).

    B: n×k database codes; U: m×k relaxed codes of the sampled images Ω, which are the database rows
    `sample_index`; S: m×n (soft) similarity. The hash and quantisation terms of one outer iteration,
    summed over Ω without their positive factors. Derived and checked by brute force in
    `notebooks/02_training.ipynb`. Returns a 0-dim float64 tensor.
    """
    B, U, S = B.double(), U.double(), S.double()
    m, k = U.shape
    if B.dim() != 2 or B.shape[1] != k or S.shape != (m, B.shape[0]) or len(sample_index) != m:
        raise ValueError(f"codes_objective: need B n×k, U m×k, S m×n and m sample indices; got B {tuple(B.shape)}, "
                         f"U {tuple(U.shape)}, S {tuple(S.shape)}, {len(sample_index)} indices")
    return ((U @ B.t() - k * S) ** 2).sum() + gamma * ((B[sample_index] - U) ** 2).sum()


def hashing_losses(outputs: dict[str, torch.Tensor], B: torch.Tensor, S: torch.Tensor,
                   batch_db_index: torch.Tensor, weights: LossWeights, gamma: float = 200.0,
                   target_images: torch.Tensor | None = None, batch_size: int | None = None
                   ) -> dict[str, torch.Tensor]:
    """All terms for one batch plus `total` = Σ weight·term.

    outputs: the model's training dict (`u`, and `features`/`reconstruction`/`image` when present);
    B: n×k database codes; S: b×n (soft) similarity of the batch to the database;
    batch_db_index: database row of each batch image (Ω(i)); target_images: I in [0, 1];
    batch_size: the decorrelation normaliser b̄ (`decorrelation_loss`).
    """
    u = outputs["u"].float()
    B = B.to(u)
    terms: dict[str, torch.Tensor] = {
        "hash": hash_loss(u, B, S.to(u)),
        "quant": quantization_loss(u, B[batch_db_index], B.shape[0], gamma),
    }
    if "reconstruction" in outputs:
        with torch.set_grad_enabled(torch.is_grad_enabled() and weights.rec > 0):
            terms["rec"] = reconstruction_loss(outputs["reconstruction"].float(), outputs["features"].float())
        with torch.set_grad_enabled(torch.is_grad_enabled() and weights.dec > 0):
            terms["dec"] = decorrelation_loss(u, batch_size)
    if "image" in outputs:
        if target_images is None:
            raise ValueError("the a2netpp image term needs target_images (the batch in [0, 1])")
        with torch.set_grad_enabled(torch.is_grad_enabled() and weights.image > 0):
            terms["image"] = image_loss(outputs["image"].float(), target_images.to(u))
    total = sum(getattr(weights, name) * value for name, value in terms.items() if getattr(weights, name) > 0)
    terms["total"] = total
    return terms
