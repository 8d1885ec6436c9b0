"""Attention that streams: FlashAttention's idea (Dao et al., 2022; FlashAttention-2, Dao, 2023) in plain PyTorch.

Causal attention written out keeps a (T, T) softmax per head for the backward pass: memory quadratic in the context.
Here the queries go through in tiles, and for each tile the keys and values stream past in tiles too: a running
maximum and a running sum of exponentials (the online softmax) let each tile's output be corrected as later keys
arrive, so no (T, T) matrix is ever whole. The forward pass keeps only q, k, v, the output and each row's
log-sum-exp; the backward pass recomputes each tile's probabilities from them. Memory is linear in the context, the
arithmetic the same plus one recomputation. Grouped-query heads read their shared key/value head without copying
it. `streaming_attention` equals `F.scaled_dot_product_attention(..., is_causal=True)` in values and gradients (a
test holds it); a fused GPU kernel does the same loops in fast on-chip memory, which is where its speed comes from.
"""

from __future__ import annotations

import math

import torch


def _tiles(length: int, tile: int) -> list[tuple[int, int]]:
    return [(start, min(start + tile, length)) for start in range(0, length, tile)]


def _scores(q_tile: torch.Tensor, k_tile: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    """Scaled scores of a query tile against a key tile, (..., rows, cols), -inf where a key lies after its query."""
    scores = q_tile @ k_tile.transpose(-2, -1) / math.sqrt(q_tile.size(-1))
    if cols[1] - 1 > rows[0]:  # the tile reaches past the diagonal: mask the future
        query = torch.arange(*rows, device=q_tile.device)[:, None]
        key = torch.arange(*cols, device=q_tile.device)[None, :]
        scores = scores.masked_fill(key > query, float("-inf"))
    return scores


def streaming_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tile: int = 64):
    """q (B, Hkv, group, T, hs) and k, v (B, Hkv, 1, T, hs) -> the output like q and each row's log-sum-exp
    (B, Hkv, group, T), in at least fp32, one query tile at a time over the key tiles up to its last query."""
    T, exact = q.size(-2), torch.promote_types(q.dtype, torch.float32)
    out = torch.empty(q.shape, dtype=exact, device=q.device)
    lse = torch.empty(q.shape[:-1], dtype=exact, device=q.device)
    for rows in _tiles(T, tile):
        q_tile = q[..., rows[0]:rows[1], :].to(exact)
        running_max = torch.full(q_tile.shape[:-1], float("-inf"), dtype=exact, device=q.device)  # (..., rows)
        running_sum = torch.zeros_like(running_max)
        acc = torch.zeros_like(q_tile)  # the unnormalised weighted sum of values
        for cols in _tiles(rows[1], tile):  # causal: no key after the tile's last query
            scores = _scores(q_tile, k[..., cols[0]:cols[1], :].to(exact), rows, cols)  # (..., rows, cols)
            new_max = torch.maximum(running_max, scores.amax(dim=-1))
            weights = torch.exp(scores - new_max[..., None])
            correction = torch.exp(running_max - new_max)  # what the old maximum's exponentials are worth now
            running_sum = running_sum * correction + weights.sum(dim=-1)
            acc = acc * correction[..., None] + weights @ v[..., cols[0]:cols[1], :].to(exact)
            running_max = new_max
        out[..., rows[0]:rows[1], :] = acc / running_sum[..., None]
        lse[..., rows[0]:rows[1]] = running_max + torch.log(running_sum)
    return out, lse


class StreamingAttention(torch.autograd.Function):
    """Causal attention whose backward pass recomputes what the forward pass did not keep."""

    @staticmethod
    def forward(ctx, q, k, v, tile):
        out, lse = streaming_forward(q, k, v, tile)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.tile = tile
        return out.to(q.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        """The gradients of q, k, v from the saved output and log-sum-exp, recomputing each tile's probabilities
        P = exp(S - lse): dV = Pᵀ dO, dS = P ∘ (dO Vᵀ - rowsum(dO ∘ O)), dQ = dS K / √hs, dK = dSᵀ Q / √hs. A
        key/value head's gradients sum over the query heads of its group."""
        q, k, v, out, lse = ctx.saved_tensors
        T, scale, exact = q.size(-2), 1 / math.sqrt(q.size(-1)), out.dtype
        grad_out = grad_out.to(exact)
        delta = (grad_out * out).sum(dim=-1)  # (B, Hkv, group, T): rowsum(dO ∘ O), the softmax's correction term
        grad_q = torch.zeros(q.shape, dtype=exact, device=q.device)
        grad_k = torch.zeros(k.shape[:2] + k.shape[3:], dtype=exact, device=q.device)  # (B, Hkv, T, hs)
        grad_v = torch.zeros_like(grad_k)
        for rows in _tiles(T, ctx.tile):
            r0, r1 = rows
            q_tile, g_tile = q[..., r0:r1, :].to(exact), grad_out[..., r0:r1, :]
            for cols in _tiles(r1, ctx.tile):
                c0, c1 = cols
                k_tile, v_tile = k[..., c0:c1, :].to(exact), v[..., c0:c1, :].to(exact)
                probs = torch.exp(_scores(q_tile, k_tile, rows, cols) - lse[..., r0:r1, None])  # (..., rows, cols)
                grad_v[..., c0:c1, :] += (probs.transpose(-2, -1) @ g_tile).sum(dim=2)
                grad_scores = probs * (g_tile @ v_tile.transpose(-2, -1) - delta[..., r0:r1, None])
                grad_q[..., r0:r1, :] += grad_scores @ k_tile * scale
                grad_k[..., c0:c1, :] += (grad_scores.transpose(-2, -1) @ q_tile).sum(dim=2) * scale
        # k and v came in as (B, Hkv, 1, T, hs): their gradients get that dimension back
        return grad_q.to(q.dtype), grad_k[:, :, None].to(k.dtype), grad_v[:, :, None].to(v.dtype), None


def streaming_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tile: int = 64) -> torch.Tensor:
    """Causal attention of q (B, n_head, T, hs) over k, v (B, n_kv_head, T, hs), n_kv_head dividing n_head (each
    key/value head serves n_head / n_kv_head query heads in a row, as repeat_kv lays them out); returns
    (B, n_head, T, hs), computed `tile` positions at a time."""
    B, H, T, hs = q.shape
    n_kv = k.size(1)
    # (B, H, T, hs) -> (B, Hkv, group, T, hs): the query heads of a group side by side; keys broadcast over them
    out = StreamingAttention.apply(q.reshape(B, n_kv, H // n_kv, T, hs), k[:, :, None], v[:, :, None], tile)
    return out.reshape(B, H, T, hs)
