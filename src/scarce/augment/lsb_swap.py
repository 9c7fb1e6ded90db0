"""LSB Swap: exchange the k least-significant bits of every pixel between two images.

From Kim et al. 2020, "Data-Efficient Deep Learning Method for Image Classification
Using Data Augmentation, Focal Cosine Loss, and Ensemble". The low bits carry little
of what a person sees, so the image keeps its label: the label is always the one of
the image whose *high* bits are kept (``a`` in :func:`lsb_swap`, image ``i`` in
:func:`lsb_swap_batch`).

Everything works on uint8 data, before conversion to float. Randomness is split from
application (kornia style): :func:`sample_lsb_swap_params` draws, :func:`apply_lsb_swap`
is deterministic, and :func:`lsb_swap_batch` chains the two.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

__all__ = [
    "LsbSwap",
    "LsbSwapPair",
    "apply_lsb_swap",
    "lsb_swap",
    "lsb_swap_batch",
    "sample_derangement",
    "sample_lsb_swap_params",
]


def _check_bits(bits: object) -> int:
    # bool is an int subclass; True would silently mean bits=1.
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 1 <= int(bits) <= 7:
        raise ValueError(f"bits must be an int in 1..7; got {bits!r}")
    return int(bits)


def _check_p(p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1]; got {p!r}")
    return float(p)


def _check_uint8(name: str, t: object) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of dtype torch.uint8; got {type(t).__name__}")
    if t.dtype != torch.uint8:
        raise TypeError(f"{name} must have dtype torch.uint8; got {t.dtype}")


def _check_batch(x: object) -> None:
    _check_uint8("x", x)
    assert isinstance(x, Tensor)
    # A single [C, H, W] image would otherwise be read as a batch of C channel planes.
    if x.dim() != 4:
        raise ValueError(f"x must be a uint8 batch of shape [B, C, H, W]; got shape {tuple(x.shape)}")


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _check_pair(a: object, b: object, names: tuple[str, str] = ("a", "b")) -> None:
    _check_uint8(names[0], a)
    _check_uint8(names[1], b)
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.device != b.device:
        raise ValueError(f"{names[0]} and {names[1]} must be on the same device; got {a.device} and {b.device}")


def _sample_apply(batch_size: int, p: float, generator: torch.Generator | None) -> Tensor:
    # Exactly 0 or 1 draws nothing, so p=1 and an explicit all-True mask agree draw for draw.
    gdev = _gen_device(generator)
    if p >= 1.0 or p <= 0.0:
        return torch.full((batch_size,), p >= 1.0, dtype=torch.bool, device=gdev)
    return torch.rand(batch_size, generator=generator, device=gdev) < p


def lsb_swap(a: Tensor, b: Tensor, bits: int = 2) -> Tensor:
    """Return ``(a & ~mask) | (b & mask)`` with ``mask = 2**bits - 1``.

    ``a``, ``b``: uint8 tensors of the same shape (any shape), same device.
    Returns a new uint8 tensor of that shape; the inputs are not modified.
    The result keeps what ``a`` looks like, so it keeps ``a``'s label.
    """
    _check_pair(a, b)
    mask = (1 << _check_bits(bits)) - 1
    # a ^ ((a ^ b) & mask) equals the formula above and needs one buffer, no temporaries.
    out = torch.bitwise_xor(a, b)
    return out.bitwise_and_(mask).bitwise_xor_(a)


def sample_derangement(
    n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Draw a permutation with no fixed points: LongTensor ``[n]``, ``perm[i] != i``.

    Method: a uniform random order ``q`` of ``0..n-1`` and ``perm[q[i]] = q[(i+1) % n]``.
    This produces only derangements that are a single ``n``-cycle, each of the
    ``(n-1)!`` of them with equal probability (every cycle comes from ``n`` rotations
    of ``q``). Draws come from ``generator`` (the global RNG when None) on the
    generator's device; the result goes to ``device`` (default: that device).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2:
        raise ValueError(f"a derangement needs n >= 2 elements; got n={n!r}")
    n = int(n)
    gdev = _gen_device(generator)
    q = torch.randperm(n, generator=generator, device=gdev)
    perm = torch.empty_like(q)
    perm[q] = q.roll(-1)
    return perm if device is None else perm.to(device)


def sample_lsb_swap_params(
    batch_size: int, p: float = 1.0, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Draw the random parameters of one batch LSB Swap.

    Returns ``(perm, apply)``: ``perm`` LongTensor ``[B]``, a derangement (see
    :func:`sample_derangement`); ``apply`` BoolTensor ``[B]``, True where image ``i``
    is swapped (independent Bernoulli(p)). Draw order: the permutation, then the
    Bernoulli draws; ``p`` of exactly 0 or 1 makes no Bernoulli draw.
    """
    p = _check_p(p)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 2:
        raise ValueError(
            f"LSB Swap needs a batch of at least 2 images to find each a partner; got batch size {batch_size!r}"
        )
    perm = sample_derangement(int(batch_size), generator=generator)
    apply = _sample_apply(int(batch_size), p, generator)
    if device is not None:
        perm, apply = perm.to(device), apply.to(device)
    return perm, apply


def _check_index(index: object, batch_size: int, device: torch.device, name: str = "perm") -> Tensor:
    if (
        not isinstance(index, Tensor)
        or index.dtype.is_floating_point
        or index.dtype.is_complex
        or index.dtype == torch.bool
    ):
        got = index.dtype if isinstance(index, Tensor) else type(index).__name__
        raise TypeError(f"{name} must be an integer tensor (torch.int64) of shape [{batch_size}]; got {got}")
    if tuple(index.shape) != (batch_size,):
        raise ValueError(f"{name} must have shape [{batch_size}] (the batch size); got {tuple(index.shape)}")
    index = index.to(device=device, dtype=torch.int64)
    if batch_size and (int(index.min()) < 0 or int(index.max()) >= batch_size):
        raise ValueError(
            f"{name} values must lie in 0..{batch_size - 1}; got min {int(index.min())}, max {int(index.max())}"
        )
    return index


def _apply(x: Tensor, index: Tensor, bits: int) -> Tensor:
    # Unchecked core: out[i] = lsb_swap(x[i], x[index[i]]), one gather + 3 in-place ops.
    lo = (1 << bits) - 1
    flat = x.reshape(x.shape[0], -1)
    mask: int = lo
    # Processing 8 pixels per int64 word is exact (bitwise ops never cross bytes) and
    # index_select on int64 rows is ~3x faster than on uint8 rows on CPU.
    if flat.is_contiguous() and flat.shape[1] % 8 == 0 and flat.storage_offset() % 8 == 0:
        flat = flat.view(torch.int64)
        mask = int.from_bytes(bytes([lo]) * 8, "little")
    out = torch.index_select(flat, 0, index)
    out.bitwise_xor_(flat).bitwise_and_(mask).bitwise_xor_(flat)
    return out.view(torch.uint8).view(x.shape)


def apply_lsb_swap(x: Tensor, index: Tensor, bits: int = 2) -> Tensor:
    """Deterministic batch LSB Swap: ``out[i] = lsb_swap(x[i], x[index[i]], bits)``.

    ``x``: uint8 ``[B, C, H, W]``; ``index``: integer ``[B]`` with values in ``0..B-1``
    (any mapping; ``index[i] == i`` leaves image ``i`` unchanged). Returns a new uint8
    ``[B, C, H, W]``; ``x`` is not modified. Image ``i`` keeps its label.
    """
    _check_batch(x)
    bits = _check_bits(bits)
    index = _check_index(index, x.shape[0], x.device, name="index")
    return _apply(x, index, bits)


def lsb_swap_batch(
    x: Tensor, bits: int = 2, p: float = 1.0, perm: Tensor | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """LSB Swap within a batch: image ``i`` takes the low bits of image ``perm[i]``.

    ``x``: uint8 ``[B, C, H, W]`` on any device. ``perm``: integer ``[B]`` with values
    in ``0..B-1``, honoured exactly; when None a derangement is drawn from
    ``generator`` (needs ``B >= 2``). Each image is swapped with probability ``p``
    (Bernoulli draws from ``generator`` too), the others are returned unchanged.
    Draws happen on the generator's device (CPU when None) and the few indices are
    then moved to ``x.device``. Returns a new uint8 ``[B, C, H, W]``; labels are unchanged.
    """
    _check_batch(x)
    bits = _check_bits(bits)
    p = _check_p(p)
    batch = x.shape[0]
    if perm is None:
        perm, apply = sample_lsb_swap_params(batch, p, generator=generator, device=x.device)
    else:
        perm = _check_index(perm, batch, x.device)
        apply = _sample_apply(batch, p, generator).to(x.device)
    if p < 1.0:
        # Pointing an unselected image at itself makes it a no-op: one uniform pass, no
        # full-size mask and no data-dependent branch (which would sync on CUDA).
        perm = torch.where(apply, perm, torch.arange(batch, device=x.device))
    return _apply(x, perm, bits)


class LsbSwap(nn.Module):
    """Batch-stage LSB Swap as a module: ``forward(x: uint8 [B, C, H, W]) -> uint8``.

    Active only while ``self.training`` is True; in eval mode, and for batches of
    fewer than 2 images (e.g. a last incomplete batch), ``x`` is returned as is.
    ``generator`` (optional) is used for all draws; it is not part of ``state_dict``.
    Labels are unchanged: image ``i`` keeps its high bits and its label.
    """

    def __init__(self, bits: int = 2, p: float = 1.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.bits = _check_bits(bits)
        self.p = _check_p(p)
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        _check_batch(x)
        if x.shape[0] < 2:
            return x
        return lsb_swap_batch(x, bits=self.bits, p=self.p, generator=self.generator)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, p={self.p}"


class LsbSwapPair:
    """Sample-stage LSB Swap: ``(img, partner) -> img`` with ``partner``'s low bits.

    ``img``, ``partner``: uint8 ``[C, H, W]`` (any equal shapes). Choosing the partner
    is the caller's job (the dataset wrapper). Whether to swap: pass ``apply`` to
    decide yourself, or leave it None to swap with probability ``p`` drawn from
    ``generator`` (the global RNG when None). When not swapped, ``img`` itself is
    returned. The result keeps ``img``'s label.
    """

    def __init__(self, bits: int = 2, p: float = 1.0) -> None:
        self.bits = _check_bits(bits)
        self.p = _check_p(p)

    def should_apply(self, generator: torch.Generator | None = None) -> bool:
        """One Bernoulli(p) draw; p of exactly 0 or 1 draws nothing."""
        if self.p >= 1.0 or self.p <= 0.0:
            return self.p >= 1.0
        return bool(torch.rand((), generator=generator, device=_gen_device(generator)) < self.p)

    def __call__(
        self, img: Tensor, partner: Tensor, apply: bool | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        # Validate first so that bad inputs fail whatever the draw.
        _check_pair(img, partner, names=("img", "partner"))
        if apply is None:
            apply = self.should_apply(generator)
        return lsb_swap(img, partner, self.bits) if apply else img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits}, p={self.p})"
