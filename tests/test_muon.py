"""Muon: Newton–Schulz against the SVD, the optimizer against torch.optim.Muon (in bfloat16, and in float32 with
torch's iteration cast to it; on a CUDA GPU too where one is present), the dtype chosen by the hardware, and learning
happening."""

import pytest
import torch
from helpers import torch_muon_computing_in

import tinylm.train.muon
from tinylm.train.muon import Muon, muon_scale, newton_schulz, newton_schulz_dtype

# CUDA runs its own bf16 kernels, so the step-for-step equality is checked there too wherever a GPU is present
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_the_classical_cubic_iteration_converges_to_the_polar_factor_of_the_svd():
    torch.manual_seed(0)
    g = torch.randn(24, 40, dtype=torch.float64)
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    polar = u @ vh  # the orthogonal matrix nearest to g
    # p(x) = 1.5x - 0.5x³ converges to 1 for every singular value in (0, √3): given steps and float64, U·Vᵀ itself
    x = newton_schulz(g, steps=60, coefficients=(1.5, -0.5, 0.0), dtype=torch.float64)
    assert (x - polar).abs().max() < 1e-8


def test_the_quintic_keeps_the_singular_vectors_and_lifts_every_singular_value_near_one():
    torch.manual_seed(1)
    g = torch.randn(64, 32) @ torch.diag(torch.logspace(-2, 0, 32))  # singular values over two decades
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    x = newton_schulz(g).float()  # five quintic steps in bfloat16, as Muon runs them
    inside = u.T @ x @ vh.T  # (32, 32): diagonal if x has g's singular vectors
    diagonal = inside.diagonal()
    assert (inside - torch.diag(diagonal)).abs().max() < 0.05
    assert diagonal.min() > 0.5 and diagonal.max() < 1.3  # ~0.7 to ~1.2, not exactly 1
    assert s.max() / s.min() > 100  # the input's were anything but


def test_a_tall_matrix_is_orthogonalised_as_its_transpose():
    g = torch.randn(50, 20, generator=torch.Generator().manual_seed(2))
    assert torch.equal(newton_schulz(g), newton_schulz(g.T).T)


@pytest.mark.parametrize("ns_dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("device", DEVICES)
def test_ten_steps_equal_torch_optim_muon(device, nesterov, ns_dtype, monkeypatch):
    if ns_dtype != torch.bfloat16:
        torch_muon_computing_in(ns_dtype, monkeypatch)
    torch.manual_seed(3)
    shapes = [(16, 48), (48, 16), (32, 32)]  # wide, tall (scaled by √3) and square
    mine = [torch.nn.Parameter(torch.randn(s).to(device)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in mine]
    options = dict(lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=nesterov)
    ours, reference = Muon(mine, ns_dtype=ns_dtype, **options), torch.optim.Muon(theirs, **options)
    generator = torch.Generator().manual_seed(4)
    for _ in range(10):
        for a, b in zip(mine, theirs):
            a.grad = torch.randn(a.shape, generator=generator).to(device)
            b.grad = a.grad.clone()
        ours.step()
        reference.step()
    assert max((a - b).abs().max().item() for a, b in zip(mine, theirs)) == 0.0
    assert not torch.equal(mine[0].cpu(), torch.randn(16, 48, generator=torch.Generator().manual_seed(3)))


def test_float32_and_bfloat16_iterations_differ_so_the_equalities_above_pin_the_dtype():
    g = torch.randn(32, 96, generator=torch.Generator().manual_seed(6))
    in_fp32, in_bf16 = newton_schulz(g, dtype=torch.float32), newton_schulz(g, dtype=torch.bfloat16).float()
    assert in_fp32.dtype == torch.float32
    assert 1e-3 < (in_fp32 - in_bf16).abs().max() < 0.1  # the same directions, bf16's three digits apart


@pytest.mark.parametrize("fast, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_newton_schulz_runs_in_bfloat16_only_where_the_hardware_makes_it_fast(monkeypatch, fast, expected):
    asked = []
    monkeypatch.setattr(tinylm.train.muon, "bf16_is_fast", lambda device: asked.append(device) or fast)
    assert newton_schulz_dtype("cpu") == expected and asked == ["cpu"]


def test_the_scale_and_the_refusals():
    assert muon_scale(torch.Size([48, 16])) == pytest.approx(3 ** 0.5) and muon_scale(torch.Size([16, 48])) == 1.0
    with pytest.raises(ValueError, match="2-D weight matrices only"):
        Muon([torch.nn.Parameter(torch.zeros(8))])
    with pytest.raises(ValueError, match="orthogonalises matrices"):
        newton_schulz(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="floating-point dtype"):
        Muon([torch.nn.Parameter(torch.zeros(4, 4))], ns_dtype=torch.int32)


def test_muon_fits_a_linear_map():
    torch.manual_seed(5)
    target = torch.randn(16, 32)
    x = torch.randn(256, 32)
    weight = torch.nn.Parameter(torch.zeros(16, 32))
    optimizer = Muon([weight], lr=0.3, weight_decay=0.0)
    losses = []
    for step in range(100):
        optimizer.param_groups[0]["lr"] = 0.3 * (1 - step / 100)  # an orthogonal step has a fixed size: decay it
        loss = ((x @ weight.T - x @ target.T) ** 2).mean()
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.05 * losses[0]
