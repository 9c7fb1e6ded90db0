"""LSB Swap: exact bit identities, randomness contract, errors, no input mutation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scarce.augment import (
    LsbSwap,
    LsbSwapPair,
    apply_lsb_swap,
    lsb_swap,
    lsb_swap_batch,
    sample_derangement,
    sample_lsb_swap_params,
)

ALL_BITS = list(range(1, 8))


def rand_u8(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def np_swap(a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    # Independent reference: arithmetic on wider ints instead of bit masks.
    m = 2**bits
    a16, b16 = a.astype(np.int16), b.astype(np.int16)
    return ((a16 // m) * m + (b16 % m)).astype(np.uint8)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- functional pair form -------------------------------------------------------------


@pytest.mark.parametrize("bits", ALL_BITS)
@pytest.mark.parametrize("shape", [(3, 17, 9), (1, 28, 28), (4, 3, 8, 8), (5,), (2, 3, 4, 5, 6)])
def test_lsb_swap_bit_identities(bits: int, shape: tuple[int, ...]) -> None:
    a, b = rand_u8(*shape, seed=1), rand_u8(*shape, seed=2)
    out = lsb_swap(a, b, bits)
    mask = 2**bits - 1
    assert out.dtype == torch.uint8 and out.shape == a.shape
    assert torch.equal(out & ~torch.tensor(mask, dtype=torch.uint8), a & ~torch.tensor(mask, dtype=torch.uint8))
    assert torch.equal(out & mask, b & mask)
    np.testing.assert_array_equal(out.numpy(), np_swap(a.numpy(), b.numpy(), bits))


def test_lsb_swap_default_bits_is_2_and_extremes() -> None:
    a = torch.tensor([0, 255, 0b10101010], dtype=torch.uint8)
    b = torch.tensor([255, 0, 0b01010101], dtype=torch.uint8)
    assert lsb_swap(a, b).tolist() == [0b11, 0b11111100, 0b10101001]
    assert torch.equal(lsb_swap(a, a, 7), a)


def test_lsb_swap_does_not_modify_inputs() -> None:
    a, b = rand_u8(3, 8, 8, seed=3), rand_u8(3, 8, 8, seed=4)
    a0, b0 = a.clone(), b.clone()
    out = lsb_swap(a, b, 3)
    assert torch.equal(a, a0) and torch.equal(b, b0)
    assert out.data_ptr() not in (a.data_ptr(), b.data_ptr())


def test_lsb_swap_errors() -> None:
    a = rand_u8(3, 4, 4)
    with pytest.raises(TypeError, match=r"torch\.uint8.*got torch\.float32"):
        lsb_swap(a.float(), a)
    with pytest.raises(TypeError, match=r"b must have dtype torch\.uint8; got torch\.int64"):
        lsb_swap(a, a.long())
    with pytest.raises(TypeError, match="got ndarray"):
        lsb_swap(a.numpy(), a)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"same shape; got \(3, 4, 4\) and \(3, 4, 5\)"):
        lsb_swap(a, rand_u8(3, 4, 5))
    for bad in (0, 8, -1, 2.0, True, "2"):
        with pytest.raises(ValueError, match=rf"bits must be an int in 1\.\.7; got {bad!r}"):
            lsb_swap(a, a, bad)  # type: ignore[arg-type]
    assert torch.equal(lsb_swap(a, a, np.int64(2)), a)  # numpy ints are ints


# --- derangements ----------------------------------------------------------------------


@pytest.mark.parametrize("n", range(2, 10))
def test_derangement_is_permutation_without_fixed_points(n: int) -> None:
    g = gen(n)
    for _ in range(200):
        perm = sample_derangement(n, generator=g)
        assert perm.dtype == torch.int64 and perm.shape == (n,)
        assert sorted(perm.tolist()) == list(range(n))
        assert not (perm == torch.arange(n)).any()


def test_derangement_covers_all_single_cycles() -> None:
    # n=4 has (4-1)! = 6 single 4-cycles; all should show up.
    g = gen(0)
    seen = {tuple(sample_derangement(4, generator=g).tolist()) for _ in range(300)}
    assert len(seen) == 6


def test_derangement_errors_and_device() -> None:
    for bad in (0, 1, -3):
        with pytest.raises(ValueError, match=rf"n >= 2.*got n={bad}"):
            sample_derangement(bad)
    assert sample_derangement(3, device="cpu").device.type == "cpu"


# --- batch form ------------------------------------------------------------------------


@pytest.mark.parametrize("bits", ALL_BITS)
@pytest.mark.parametrize("channels", [1, 3])
def test_batch_matches_numpy_with_given_perm(bits: int, channels: int) -> None:
    x = rand_u8(6, channels, 9, 7, seed=bits)  # 63 pixels/channel: exercises the non-int64 path
    x8 = rand_u8(6, channels, 8, 8, seed=bits)  # int64 fast path
    perm = torch.tensor([2, 0, 1, 5, 3, 4])
    for t in (x, x8):
        out = lsb_swap_batch(t, bits=bits, perm=perm)
        expect = np_swap(t.numpy(), t.numpy()[perm.numpy()], bits)
        np.testing.assert_array_equal(out.numpy(), expect)
        assert torch.equal(apply_lsb_swap(t, perm, bits), out)


def test_given_perm_honoured_exactly_even_if_not_a_derangement() -> None:
    x = rand_u8(4, 3, 8, 8, seed=5)
    perm = torch.tensor([0, 0, 3, 1], dtype=torch.int32)
    out = lsb_swap_batch(x, bits=4, perm=perm)
    for i, j in enumerate(perm.tolist()):
        assert torch.equal(out[i], lsb_swap(x[i], x[j], 4))
    assert torch.equal(out[0], x[0])


def test_p0_is_identity_and_p1_swaps_all() -> None:
    x = rand_u8(8, 3, 16, 16, seed=6)
    assert torch.equal(lsb_swap_batch(x, p=0.0, generator=gen(0)), x)
    perm, apply = sample_lsb_swap_params(8, p=1.0, generator=gen(1))
    assert apply.all()
    out = lsb_swap_batch(x, bits=2, p=1.0, generator=gen(1))
    assert torch.equal(out, apply_lsb_swap(x, perm, 2))
    # Random images differ in their low bits, so every image changed.
    assert all(not torch.equal(out[i], x[i]) for i in range(8))


def test_partial_p_swaps_exactly_the_drawn_images() -> None:
    x = rand_u8(64, 1, 8, 8, seed=7)
    perm, apply = sample_lsb_swap_params(64, p=0.5, generator=gen(3))
    out = lsb_swap_batch(x, bits=3, p=0.5, generator=gen(3))
    assert 0 < int(apply.sum()) < 64
    for i in range(64):
        expect = lsb_swap(x[i], x[perm[i]], 3) if apply[i] else x[i]
        assert torch.equal(out[i], expect)


def test_same_seed_same_result_different_seed_differs() -> None:
    x = rand_u8(16, 3, 8, 8, seed=8)
    a = lsb_swap_batch(x, p=0.5, generator=gen(42))
    b = lsb_swap_batch(x, p=0.5, generator=gen(42))
    c = lsb_swap_batch(x, p=0.5, generator=gen(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    torch.manual_seed(0)
    d = lsb_swap_batch(x)
    torch.manual_seed(0)
    assert torch.equal(d, lsb_swap_batch(x))  # generator=None uses the global RNG


@pytest.mark.parametrize("batch", range(2, 10))
def test_no_image_paired_with_itself(batch: int) -> None:
    # Images 0..B-1 are constant planes with distinct low bits, so the low bits of each
    # output reveal its partner.
    x = torch.arange(batch, dtype=torch.uint8).mul(4).add(torch.arange(batch, dtype=torch.uint8) % 4)
    x = x.view(batch, 1, 1, 1).expand(batch, 1, 4, 4).contiguous()
    g = gen(batch)
    for _ in range(100):
        perm, _ = sample_lsb_swap_params(batch, generator=g)
        assert not (perm == torch.arange(batch)).any()
        out = lsb_swap_batch(x, bits=7, generator=g)
        partner = (out[:, 0, 0, 0] & 127).tolist()
        own = (x[:, 0, 0, 0] & 127).tolist()
        assert all(p != o for p, o in zip(partner, own))
        assert sorted(partner) == sorted(own)  # a permutation of the batch


def test_batch_does_not_modify_input_and_handles_non_contiguous() -> None:
    x = rand_u8(5, 8, 8, 3, seed=9).permute(0, 3, 1, 2)  # channels-last view
    x0 = x.clone()
    perm = torch.tensor([4, 3, 2, 1, 0])
    out = lsb_swap_batch(x, bits=2, perm=perm)
    assert torch.equal(x, x0)
    np.testing.assert_array_equal(out.numpy(), np_swap(x0.numpy(), x0.numpy()[perm.numpy()], 2))


def test_batch_errors() -> None:
    x = rand_u8(4, 3, 4, 4)
    with pytest.raises(TypeError, match=r"x must have dtype torch\.uint8; got torch\.float32"):
        lsb_swap_batch(x.float())
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]; got shape \(3, 4, 4\)"):
        lsb_swap_batch(x[0])
    with pytest.raises(ValueError, match="at least 2 images.*got batch size 1"):
        lsb_swap_batch(x[:1])
    for bad in (-0.1, 1.5, "x"):
        with pytest.raises(ValueError, match=rf"p must be a probability in \[0, 1\]; got {bad!r}"):
            lsb_swap_batch(x, p=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"bits must be an int in 1\.\.7; got 9"):
        lsb_swap_batch(x, bits=9)
    with pytest.raises(ValueError, match=r"perm must have shape \[4\].*got \(3,\)"):
        lsb_swap_batch(x, perm=torch.tensor([1, 2, 0]))
    with pytest.raises(ValueError, match=r"perm values must lie in 0\.\.3; got min 0, max 4"):
        lsb_swap_batch(x, perm=torch.tensor([1, 2, 4, 0]))
    with pytest.raises(ValueError, match=r"got min -1"):
        lsb_swap_batch(x, perm=torch.tensor([1, 2, -1, 0]))
    with pytest.raises(TypeError, match=r"perm must be an integer tensor.*got torch\.float32"):
        lsb_swap_batch(x, perm=torch.tensor([1.0, 2.0, 3.0, 0.0]))
    with pytest.raises(TypeError, match=r"perm must be an integer tensor.*got list"):
        lsb_swap_batch(x, perm=[1, 2, 3, 0])  # type: ignore[arg-type]


# --- module and pair transform -----------------------------------------------------------


def test_module_train_eval_and_small_batches() -> None:
    x = rand_u8(8, 3, 8, 8, seed=10)
    m = LsbSwap(bits=3, p=1.0, generator=gen(5))
    out = m(x)
    assert torch.equal(out, lsb_swap_batch(x, bits=3, generator=gen(5)))
    m.eval()
    assert m(x) is x
    m.train()
    small = x[:1]
    assert m(small) is small  # a last batch of one image passes through
    assert "bits=3, p=1.0" in repr(m)
    with pytest.raises(ValueError, match="bits must be an int in 1..7; got 0"):
        LsbSwap(bits=0)
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]; got 2"):
        LsbSwap(p=2)


def test_pair_transform() -> None:
    img, partner = rand_u8(3, 8, 8, seed=11), rand_u8(3, 8, 8, seed=12)
    img0 = img.clone()
    t = LsbSwapPair(bits=2, p=0.5)
    assert torch.equal(t(img, partner, apply=True), lsb_swap(img, partner, 2))
    assert t(img, partner, apply=False) is img
    assert torch.equal(img, img0)
    # Drawn with a generator: reproducible, and both outcomes occur.
    r1 = [torch.equal(t(img, partner, generator=g), img) for g in [gen(0)] for _ in range(50)]
    r2 = [torch.equal(t(img, partner, generator=g), img) for g in [gen(0)] for _ in range(50)]
    assert r1 == r2 and any(r1) and not all(r1)
    assert torch.equal(LsbSwapPair(p=1.0)(img, partner), lsb_swap(img, partner))
    assert LsbSwapPair(p=0.0)(img, partner) is img
    one = rand_u8(1, 28, 28, seed=13)
    assert LsbSwapPair(bits=5)(one, one.flip(-1)).shape == (1, 28, 28)
    with pytest.raises(ValueError, match=r"img and partner must have the same shape; got \(3, 8, 8\) and \(1, 8, 8\)"):
        t(img, partner[:1], apply=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu() -> None:
    x = rand_u8(9, 3, 16, 16, seed=14)
    xc = x.cuda()
    cpu = lsb_swap_batch(x, bits=3, p=0.5, generator=gen(7))
    # A CPU generator draws on CPU; indices move to the GPU, so results match bit for bit.
    cuda = lsb_swap_batch(xc, bits=3, p=0.5, generator=gen(7))
    assert cuda.device.type == "cuda" and torch.equal(cuda.cpu(), cpu)
    gc = torch.Generator(device="cuda").manual_seed(7)
    out = lsb_swap_batch(xc, bits=3, generator=gc)
    assert out.device.type == "cuda" and out.shape == x.shape
    assert torch.equal(lsb_swap(xc[0], xc[1], 3).cpu(), lsb_swap(x[0], x[1], 3))
    assert torch.equal(LsbSwap(bits=3, p=0.5, generator=gen(7))(xc).cpu(), cpu)
