"""LoRA: fine-tune a few low-rank matrices beside frozen weights (Hu et al., 2021, arXiv:2106.09685).

A wrapped linear layer computes x Wᵀ + b + (alpha/r) · x Aᵀ Bᵀ, A (r × in) and B (out × r) its only trainable
tensors, so AdamW keeps moments for r·(in + out) numbers per layer instead of in·out. B starts at zero, so the
wrapped model computes what the base does until the first step; A starts random, so B's first gradient is not zero.
Chat fine-tuning's new tokens start with equal rows, which a frozen embedding could never tell apart, so `TokenRows`
makes those rows alone trainable (PEFT's "trainable tokens").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import TrainConfig
from ..errors import InputError
from ..paths import atomic_write

LORA_TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_gate", "mlp.c_proj")
DEFAULT_TARGETS = ("attn.c_attn", "attn.c_proj")


ADAPTERS_FILE = "adapters.pt"  # where a fine-tuning run keeps best.pt's adapters alone

class LoRAError(InputError):
    """A LoRA setting that cannot work (rank, targets, adapters that do not fit the model)."""


@dataclass(frozen=True)
class LoRAOptions:
    """What a fine-tuning command asks for (--lora-rank, --lora-alpha, --lora-targets); alpha None: alpha = rank."""

    rank: int
    alpha: float | None = None
    targets: tuple[str, ...] = DEFAULT_TARGETS

    def adapt(self, model: nn.Module, cfg: TrainConfig, learning_rate: float,
              token_ids: Iterable[int] = ()) -> tuple[TrainConfig, str]:
        """Wrap `model` for a fine-tuning run whose recipe is `cfg`: (cfg at the LoRA peak rate `learning_rate`, its
        floor scaled alike, and a line that says what trains)."""
        apply_lora(model, self.rank, self.alpha, self.targets, token_ids=token_ids)
        trainable, total = trainable_share(model)
        line = (f"LoRA rank {self.rank} on {', '.join(self.targets)}: {trainable:,} of {total:,} parameters train "
                f"({100 * trainable / total:.2f}%), learning rate {learning_rate:g}")
        return replace(cfg, learning_rate=learning_rate, min_lr=learning_rate * cfg.min_lr / cfg.learning_rate), line


class LoRALinear(nn.Module):
    """`base` (frozen) plus the low-rank update (alpha/rank) · B·A; B starts at zero."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        out_features, in_features = base.weight.shape
        if rank < 1 or rank > min(in_features, out_features):
            raise LoRAError(f"LoRA rank {rank} does not fit a {in_features} -> {out_features} layer: choose a rank "
                            f"from 1 to {min(in_features, out_features)}")
        self.base = base
        self.base.requires_grad_(False)
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / rank
        factory = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own init, as in the reference code
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)  # (..., in) -> (..., r) -> (..., out)
        return self.base(x) + self.scaling * update

    def merged(self) -> nn.Linear:
        """A plain nn.Linear computing the same function (without dropout): W + scaling · B·A."""
        out_features, in_features = self.base.weight.shape
        layer = nn.Linear(in_features, out_features, bias=self.base.bias is not None,
                          device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(self.base.weight + self.scaling * (self.lora_B @ self.lora_A))
            if self.base.bias is not None:
                layer.bias.copy_(self.base.bias)
        return layer


class TokenRows(nn.Module):
    """A frozen embedding or output head whose rows `ids` are replaced by the trainable `rows` (k, C).

    For an embedding the looked-up vectors of those ids change; for a head (a bias-free Linear over the
    vocabulary) their logits do. Both add `rows - base rows` to what the frozen layer computes, so the wrapped
    layer equals the base until `rows` moves. With tied weights the embedding and the head share one `rows`.
    """

    def __init__(self, base: nn.Embedding | nn.Linear, ids: torch.Tensor, rows: nn.Parameter):
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.register_buffer("ids", ids, persistent=False)  # the settings carry them, not the weights
        self.rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = self.rows - self.base.weight[self.ids]  # (k, C)
        out = self.base(x)
        if isinstance(self.base, nn.Embedding):  # x: ids (B, T) -> vectors (B, T, C)
            hits = (x.unsqueeze(-1) == self.ids).to(out.dtype)  # (B, T, k)
            return out + hits @ delta.to(out.dtype)
        return out.index_add(-1, self.ids, x @ delta.to(x.dtype).T)  # x (B, T, C) -> logits (B, T, vocab)

    def merged(self) -> nn.Module:
        """The base layer with the rows written into its weight (in place: a tied head shares that weight)."""
        with torch.no_grad():
            self.base.weight[self.ids] = self.rows.to(self.base.weight.dtype)
        return self.base


def _parent_and_attribute(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, attribute = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attribute


def apply_lora(model: nn.Module, rank: int, alpha: float | None = None, targets: Iterable[str] = DEFAULT_TARGETS,
               dropout: float = 0.0, token_ids: Iterable[int] = ()) -> list[str]:
    """Freeze every parameter of `model`, wrap the linear layers whose names end with one of `targets` in
    LoRALinear (alpha None: alpha = rank, a scaling of 1; alpha = c·√rank gives rsLoRA's scale, arXiv:2312.03732),
    make the embedding rows of `token_ids` (and their output-head rows) trainable with `TokenRows`, and return the
    wrapped layers' names."""
    targets = tuple(targets)
    unknown = [t for t in targets if t not in LORA_TARGETS]
    if unknown or not targets:
        raise LoRAError(f"unknown LoRA target(s) {', '.join(unknown) or '(none given)'}: choose from "
                        f"{', '.join(LORA_TARGETS)}")
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise LoRAError("this model already has LoRA adapters: merge them (merge_lora) before adding new ones")
    chosen = [name for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and name.endswith(tuple("." + t for t in targets))]
    if not chosen:
        raise LoRAError(f"no linear layer of this model matches {', '.join(targets)} (a mixture-of-experts block "
                        f"keeps its experts in batched tensors, not linear layers): choose attention targets")
    ids = sorted(set(int(i) for i in token_ids))
    vocab = model.transformer.wte.weight.size(0) if ids else 0
    if ids and not 0 <= ids[0] <= ids[-1] < vocab:
        raise LoRAError(f"token ids {ids} are not all rows of the {vocab}-row embedding")
    model.requires_grad_(False)
    for name in chosen:
        parent, attribute = _parent_and_attribute(model, name)
        setattr(parent, attribute, LoRALinear(getattr(parent, attribute), rank, rank if alpha is None else alpha,
                                              dropout))
    if ids:
        wte, head = model.transformer.wte, model.lm_head
        index = torch.tensor(ids, device=wte.weight.device)
        rows = nn.Parameter(wte.weight[index].detach().clone())
        model.transformer.wte = TokenRows(wte, index, rows)
        tied = head.weight is wte.weight
        model.lm_head = TokenRows(head, index, rows if tied else nn.Parameter(head.weight[index].detach().clone()))
    return chosen


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter (and trainable token rows) into its base weight, in place; returns how many layers were
    merged. The model then holds plain layers under the base model's parameter names."""
    wrapped = [name for name, module in model.named_modules() if isinstance(module, (LoRALinear, TokenRows))]
    for name in wrapped:
        parent, attribute = _parent_and_attribute(model, name)
        setattr(parent, attribute, getattr(parent, attribute).merged())
    return len(wrapped)


def lora_settings(model: nn.Module) -> dict[str, Any]:
    """{"rank", "alpha", "targets", "token_ids"} of the adapters in `model` (what checkpoints and `adapter_state`
    keep beside the tensors, and what `apply_settings` rebuilds from)."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    if not layers:
        raise LoRAError("this model has no LoRA adapters")
    first = next(iter(layers.values()))
    targets = sorted({t for t in LORA_TARGETS for name in layers if name.endswith("." + t)})
    rows = model.transformer.wte
    token_ids = rows.ids.tolist() if isinstance(rows, TokenRows) else []
    return {"rank": first.rank, "alpha": first.alpha, "targets": targets, "token_ids": token_ids}


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, (LoRALinear, TokenRows)) for m in model.modules())


def apply_settings(model: nn.Module, settings: dict[str, Any]) -> list[str]:
    """Wrap a base model as `lora_settings` described another: the same layers, rank, alpha and token rows."""
    return apply_lora(model, settings["rank"], settings["alpha"], settings["targets"],
                      token_ids=settings.get("token_ids", ()))


def adapter_state(model: nn.Module) -> dict[str, Any]:
    """The adapters alone: {"settings": lora_settings, "tensors": {name: tensor}} for the A and B matrices and
    the trainable token rows."""
    tensors = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    return {"settings": lora_settings(model), "tensors": tensors}


def load_adapters(model: nn.Module, state: dict[str, Any]) -> list[str]:
    """Wrap a base model as `state` describes and load its A and B; LoRAError if they do not fit."""
    wrapped = apply_settings(model, state["settings"])
    own = dict(model.named_parameters())
    expected = {name for name, p in own.items() if p.requires_grad}
    if set(state["tensors"]) != expected:
        raise LoRAError("these adapters were trained on a model with other layers: load them on the base model "
                        "they were trained from")
    with torch.no_grad():
        for name, tensor in state["tensors"].items():
            if own[name].shape != tensor.shape:
                raise LoRAError(f"adapter {name} has shape {tuple(tensor.shape)}, the model expects "
                                f"{tuple(own[name].shape)}: load it on the base model it was trained from")
            own[name].copy_(tensor)
    return wrapped


def save_adapters(path: str | Path, model: nn.Module, **info: Any) -> int:
    """Write `adapter_state(model)` and `info` (e.g. the base it was trained from) to `path`, atomically; returns
    the file's size in bytes. `read_adapters` reads it back."""
    with atomic_write(path) as f:
        torch.save({**adapter_state(model), **info}, f)
    return Path(path).stat().st_size


def read_adapters(path: str | Path) -> dict[str, Any]:
    """What `save_adapters` wrote (tensors and plain data only: loading runs no code)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def trainable_share(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, all parameters) of `model`."""
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)


def save_run_adapters(model: nn.Module, folder: str | Path, base: str) -> dict[str, int] | None:
    """A fine-tuning run's adapters (the weights in `model`, best.pt's) saved alone to folder/ADAPTERS_FILE, and
    their sizes beside best.pt's, for the run's report; None for a model without adapters."""
    if not has_lora(model):
        return None
    folder = Path(folder)
    trainable, total = trainable_share(model)
    size = save_adapters(folder / ADAPTERS_FILE, model, base=base)
    return {"trainable": trainable, "parameters": total, "adapters_bytes": size,
            "checkpoint_bytes": (folder / "best.pt").stat().st_size}
