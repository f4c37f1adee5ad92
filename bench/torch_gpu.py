#!/usr/bin/env python3
"""PyTorch on the same GPU, the same model and step as `fable bench step --engine cuda`.

The model is llama2.c's model.py (RMSNorm, RoPE on adjacent pairs, GQA, SwiGLU, tied
classifier), in PyTorch at its fair best: bf16 autocast with fp32 master weights, fused AdamW
(0.9/0.95, wd 0.1 on matrices, clip 1.0), flash scaled-dot-product attention (is_causal),
eager and torch.compile. One "step" = forward + backward + clip + AdamW over batch x seq
tokens, timed with CUDA events after warm-up; median of --steps. FLOPs per token as fable
counts them (SPEC §2): 6·N_matmul + 12·L·D·T.

usage: bench/torch_gpu.py --preset stories110M --batch 32 --seq 1024 [--compile] [--steps 10] [--json]
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import PRESETS  # noqa: E402  (the CPU twin's table: dim, hidden, layers, heads, kv_heads, vocab)


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).type_as(x) * self.weight


def rope_tables(hs, T, device):
    freqs = 1.0 / (10000.0 ** (torch.arange(0, hs, 2, device=device).float() / hs))
    ang = torch.outer(torch.arange(T, device=device).float(), freqs)
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):  # x [B, T, H, hs]: rotate pairs (2i, 2i+1)
    xr = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = xr[..., 0], xr[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2).type_as(x)


class Block(nn.Module):
    def __init__(self, d, f, nh, nkv):
        super().__init__()
        self.nh, self.nkv, self.hs = nh, nkv, d // nh
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, nkv * self.hs, bias=False)
        self.wv = nn.Linear(d, nkv * self.hs, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.w1 = nn.Linear(d, f, bias=False)
        self.w2 = nn.Linear(f, d, bias=False)
        self.w3 = nn.Linear(d, f, bias=False)
        self.attention_norm = RMSNorm(d)
        self.ffn_norm = RMSNorm(d)

    def forward(self, x, cos, sin):
        B, T, D = x.shape
        h = self.attention_norm(x)
        q = apply_rope(self.wq(h).view(B, T, self.nh, self.hs), cos, sin)
        k = apply_rope(self.wk(h).view(B, T, self.nkv, self.hs), cos, sin)
        v = self.wv(h).view(B, T, self.nkv, self.hs)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.nkv != self.nh)
        x = x + self.wo(att.transpose(1, 2).reshape(B, T, D))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Llama(nn.Module):
    def __init__(self, d, f, L, nh, nkv, V, T):
        super().__init__()
        self.tok = nn.Embedding(V, d)
        self.layers = nn.ModuleList(Block(d, f, nh, nkv) for _ in range(L))
        self.norm = RMSNorm(d)
        self.out = nn.Linear(d, V, bias=False)
        self.out.weight = self.tok.weight  # tied, as llama2.c
        cos, sin = rope_tables(d // nh, T, "cuda")
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if n.endswith(("w3.weight", "wo.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, tgt):
        T = idx.shape[1]
        x = self.tok(idx)
        for blk in self.layers:
            x = blk(x, self.cos[:T], self.sin[:T])
        logits = self.out(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), tgt.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="stories110M")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    d, f, L, nh, nkv, V = PRESETS[a.preset]
    torch.manual_seed(1)
    torch.backends.cuda.matmul.allow_tf32 = True
    model = Llama(d, f, L, nh, nkv, V, a.seq).cuda()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    nodecay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    fwd = torch.compile(model) if a.compile else model
    g = torch.Generator(device="cuda").manual_seed(7)
    idx = torch.randint(0, V, (a.batch, a.seq), device="cuda", generator=g)
    tgt = torch.randint(0, V, (a.batch, a.seq), device="cuda", generator=g)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.time()
    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    warm_s = time.time() - t0
    ms = []
    for _ in range(a.steps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        step()
        e1.record()
        e1.synchronize()
        ms.append(e0.elapsed_time(e1))
    med = statistics.median(ms)
    n_matmul = V * d + L * (2 * d * d + 2 * d * (nkv * d // nh) + 3 * d * f)
    flops = (6 * n_matmul + 12 * L * d * a.seq) * a.batch * a.seq
    tps = a.batch * a.seq / (med / 1e3)
    tflops = flops / (med / 1e3) / 1e12
    r = {"bench": "torch_step", "preset": a.preset, "batch": a.batch, "seq": a.seq,
         "mode": "compile" if a.compile else "eager", "torch": torch.__version__,
         "device": torch.cuda.get_device_name(), "ms_median": round(med, 3), "ms_min": round(min(ms), 3),
         "tokens_per_s": round(tps, 1), "tflops": round(tflops, 2), "mfu_pct_989": round(100 * tflops / 989.4, 2),
         "warmup_s": round(warm_s, 1)}
    print(json.dumps(r) if a.json else
          f"torch {r['mode']:7s} {a.preset} {a.batch}x{a.seq}: {med:.2f} ms/step, {tps:,.0f} tok/s, "
          f"{tflops:.1f} TFLOP/s ({r['mfu_pct_989']:.1f}% of 989)")


if __name__ == "__main__":
    sys.exit(main())
