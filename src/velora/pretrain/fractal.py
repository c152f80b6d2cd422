"""Formula-driven pre-training images: fractal categories from iterated function systems.

FractalDB (Kataoka et al., "Pre-training without Natural Images", ACCV 2020 / IJCV 2022) pre-trains
vision Transformers on images of IFS attractors, one category per random IFS. No natural image, no
download and no label noise: a category is a few numbers drawn from a seed.

A category is an IFS of K affine maps w_k(p) = A_k p + b_k (K in 2..4, every entry drawn uniformly
from [-1, 1], each map strictly contracting), chosen with probability proportional to |det A_k|, and
kept only if its attractor covers enough of the image (FractalDB's filling-rate filter). An image is
the chaos game run from many starting points at once, drawn as points.

Per image (the augmentation, drawn from a torch Generator): one map's parameters scaled by a factor
in [0.85, 1.15] (FractalDB's intra-category variation), a random rotation, mirror, scale and position,
and random foreground and background colours, every channel 0.3-0.7 apart (so chromatic as well as
luminance edges are learned),
plus sensor-like Gaussian noise.

Units: images are float RGB in [0, 1], shape (B, 3, H, W); lengths are pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

MAX_MAPS = 4


@dataclass(frozen=True)
class FractalCategories:
    """A set of IFS fractal categories.

    Attributes:
        maps: (C, MAX_MAPS, 2, 3) float32 affine maps [A | b] of each category, zero-padded.
        probs: (C, MAX_MAPS) float32 map probabilities (0 for padding), each row sums to 1.
        seed: the seed the categories were drawn with.
    """

    maps: torch.Tensor
    probs: torch.Tensor
    seed: int

    def __len__(self) -> int:
        return self.maps.shape[0]


def sample_ifs(rng: np.random.Generator, max_singular: float = 0.9) -> np.ndarray:
    """One random IFS: (K, 2, 3) affine maps with entries in [-1, 1], each with largest singular value < max_singular."""
    num_maps = int(rng.integers(2, MAX_MAPS + 1))
    maps: list[np.ndarray] = []
    while len(maps) < num_maps:
        m = rng.uniform(-1.0, 1.0, size=(2, 3))
        if np.linalg.norm(m[:, :2], ord=2) < max_singular:
            maps.append(m)
    return np.stack(maps)


def ifs_probabilities(maps: np.ndarray) -> np.ndarray:
    """(K, 2, 3) maps -> (K,) probabilities proportional to |det A_k| (a floor keeps thin maps visible)."""
    det = np.abs(np.linalg.det(maps[:, :, :2]))
    det = np.maximum(det, 0.02)
    return det / det.sum()


def make_categories(num_categories: int, seed: int, image_size: int = 64, min_fill: float = 0.12) -> FractalCategories:
    """Draw `num_categories` IFS whose canonical rendering covers at least `min_fill` of the image."""
    rng = np.random.default_rng(seed)
    maps = np.zeros((num_categories, MAX_MAPS, 2, 3), dtype=np.float32)
    probs = np.zeros((num_categories, MAX_MAPS), dtype=np.float32)
    found = 0
    while found < num_categories:
        candidate = sample_ifs(rng)
        k = len(candidate)
        trial_maps = np.zeros((1, MAX_MAPS, 2, 3), dtype=np.float32)
        trial_probs = np.zeros((1, MAX_MAPS), dtype=np.float32)
        trial_maps[0, :k], trial_probs[0, :k] = candidate, ifs_probabilities(candidate)
        trial = FractalCategories(torch.from_numpy(trial_maps), torch.from_numpy(trial_probs), seed)
        mask = render_masks(
            trial, torch.zeros(1, dtype=torch.long), image_size, torch.Generator().manual_seed(0), augment=False
        )
        if mask.mean().item() >= min_fill:
            maps[found], probs[found] = trial_maps[0], trial_probs[0]
            found += 1
    return FractalCategories(torch.from_numpy(maps), torch.from_numpy(probs), seed)


def chaos_game(
    maps: torch.Tensor,
    probs: torch.Tensor,
    generator: torch.Generator,
    chains: int = 256,
    steps: int = 24,
    burn_in: int = 8,
) -> torch.Tensor:
    """Points on each attractor: (B, K, 2, 3) maps, (B, K) probs -> (B, chains * (steps - burn_in), 2)."""
    B = maps.shape[0]
    points = torch.rand(B, chains, 2, generator=generator) * 2 - 1
    batch = torch.arange(B)[:, None]
    kept = []
    for step in range(steps):
        k = torch.multinomial(probs, chains, replacement=True, generator=generator)  # (B, chains)
        m = maps[batch, k]  # (B, chains, 2, 3)
        points = (m[..., :2] @ points.unsqueeze(-1)).squeeze(-1) + m[..., 2]
        if step >= burn_in:
            kept.append(points)
    return torch.cat(kept, dim=1)


def render_masks(
    categories: FractalCategories,
    labels: torch.Tensor,
    image_size: int,
    generator: torch.Generator,
    augment: bool = True,
    rotation: float = 1.0,
) -> torch.Tensor:
    """(B,) category labels -> (B, H, W) float coverage in [0, 1] of each attractor's points.

    rotation: the span of the random rotation as a fraction of a full turn (1: any angle, 0: upright).
    """
    B = labels.shape[0]
    maps, probs = categories.maps[labels].clone(), categories.probs[labels]
    if augment:  # scale one map's parameters: the same category, a slightly different shape
        which = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        factor = 0.85 + 0.3 * torch.rand(B, generator=generator)
        maps[torch.arange(B), which] *= factor[:, None, None]
    points = chaos_game(maps, probs, generator)  # (B, P, 2)

    # Fit each point cloud into the image: centre, then a random rotation, mirror, scale and shift.
    low, high = points.amin(dim=1), points.amax(dim=1)  # (B, 2)
    points = points - (low + high)[:, None] / 2
    extent = (high - low).amax(dim=1).clamp_min(1e-6)  # (B,)
    if augment:
        angle = 2 * math.pi * rotation * torch.rand(B, generator=generator)
        cos, sin = torch.cos(angle), torch.sin(angle)
        turn = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
        mirror = torch.where(torch.rand(B, generator=generator) < 0.5, -1.0, 1.0)
        turn[:, :, 0] *= mirror[:, None]
        points = points @ turn.transpose(1, 2)
        size = image_size * (0.45 + 0.55 * torch.rand(B, generator=generator))  # px, longest side
        shift = (torch.rand(B, 2, generator=generator) - 0.5) * (image_size - size[:, None] / 1.5).clamp_min(0)
    else:
        size, shift = torch.full((B,), 0.9 * image_size), torch.zeros(B, 2)
    pixels = points * (size / extent)[:, None, None] + shift[:, None] + image_size / 2
    pixels = pixels.floor().long()
    inside = ((pixels >= 0) & (pixels < image_size)).all(dim=-1)  # (B, P)
    flat = pixels[..., 1] * image_size + pixels[..., 0] + torch.arange(B)[:, None] * image_size**2
    hits = torch.zeros(B * image_size * image_size)
    hits.index_add_(0, flat[inside], torch.ones(int(inside.sum())))
    return (hits.view(B, image_size, image_size) / 2).clamp(max=1.0)  # two hits: fully covered


def render_images(
    categories: FractalCategories,
    labels: torch.Tensor,
    image_size: int,
    generator: torch.Generator,
    rotation: float = 1.0,
    bright_on_dark: bool = False,
) -> torch.Tensor:
    """(B,) labels -> (B, 3, H, W) float RGB in [0, 1]: coloured fractals on coloured backgrounds, with noise.

    bright_on_dark: every channel of the fractal in [0.6, 1], of the background in [0, 0.4] (random
    hues, fixed polarity: an easier start), instead of any two colours 0.3-0.7 apart per channel.
    """
    B = labels.shape[0]
    mask = render_masks(categories, labels, image_size, generator, rotation=rotation)[:, None]  # (B, 1, H, W)
    background = torch.rand(B, 3, 1, 1, generator=generator)
    # every channel differs by 0.3-0.7 (circularly), so no fractal is invisible against its background
    foreground = (background + 0.3 + 0.4 * torch.rand(B, 3, 1, 1, generator=generator)) % 1.0
    if bright_on_dark:
        background, foreground = 0.4 * background, 0.6 + 0.4 * (foreground - background).abs()
    images = background + mask * (foreground - background)
    noise = 0.05 * torch.rand(B, 1, 1, 1, generator=generator)
    images = images + noise * torch.randn(images.shape, generator=generator)
    return images.clamp(0.0, 1.0)


__all__ = ["FractalCategories", "make_categories", "render_images", "render_masks", "chaos_game"]
