"""Profiles, devices and precision chosen from the environment and the hardware."""

import contextlib

import pytest
import torch

from tinylm.runtime import autocast, needs_grad_scaler, resolve_device, resolve_dtype, resolve_profile


def test_profile_argument_beats_environment_beats_hardware_default(monkeypatch):
    monkeypatch.setenv("TINYLM_PROFILE", "smoke")
    assert resolve_profile("gpu") == "gpu"
    assert resolve_profile() == "smoke"
    monkeypatch.setenv("TINYLM_PROFILE", " CPU ")
    assert resolve_profile() == "cpu"
    monkeypatch.delenv("TINYLM_PROFILE")
    assert resolve_profile() == ("gpu" if torch.cuda.is_available() else "cpu")


def test_unknown_profile_is_an_error_listing_the_choices():
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        resolve_profile("tpu")


def test_explicit_device_is_used_as_given():
    assert resolve_device("cpu") == torch.device("cpu")


def test_cpu_precision_is_float32_unless_asked(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_dtype(cpu) == torch.float32
    assert resolve_dtype(cpu, "bfloat16") == torch.bfloat16
    assert not needs_grad_scaler(cpu, torch.float16)
    assert needs_grad_scaler(torch.device("cuda"), torch.float16)
    assert not needs_grad_scaler(torch.device("cuda"), torch.bfloat16)


def test_float32_autocast_is_a_no_op_and_bfloat16_autocast_is_real():
    cpu = torch.device("cpu")
    assert isinstance(autocast(cpu, torch.float32), contextlib.nullcontext)
    a = torch.randn(4, 4)
    with autocast(cpu, torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
