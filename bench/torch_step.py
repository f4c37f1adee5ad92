#!/usr/bin/env python3
"""PyTorch twin of `fable bench step`: the identical Llama-2 model and training step
(forward, cross-entropy, backward, AdamW with weight decay on matrices, clip 1.0), fp32,
timed after warm-up. Run with Debian's /usr/bin/python3 (python3-torch 1.13).

For PyTorch at its fair best (SPEC §9) run it with Debian's OpenMP OpenBLAS and tcmalloc:
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \
  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/bin/python3 bench/torch_step.py ...
bench/compare.sh does that for you.
"""
import argparse, json, math, statistics, time
import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {  # dim, hidden, layers, heads, kv_heads, vocab
    "stories260K": (64, 172, 5, 8, 4, 512),
    "stories15M": (288, 768, 6, 6, 6, 32000),
    "stories42M": (512, 1376, 8, 8, 8, 32000),
    "stories110M": (768, 2048, 12, 12, 12, 32000),
}


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


class Block(nn.Module):
    def __init__(self, D, Fh, NH, NKV):
        super().__init__()
        self.NH, self.NKV, self.HS = NH, NKV, D // NH
        self.an, self.fn = RMSNorm(D), RMSNorm(D)
        self.wq = nn.Linear(D, D, bias=False)
        self.wk = nn.Linear(D, NKV * self.HS, bias=False)
        self.wv = nn.Linear(D, NKV * self.HS, bias=False)
        self.wo = nn.Linear(D, D, bias=False)
        self.w1 = nn.Linear(D, Fh, bias=False)
        self.w2 = nn.Linear(Fh, D, bias=False)
        self.w3 = nn.Linear(D, Fh, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, D = x.shape
        h = self.an(x)
        q = self.wq(h).view(B, T, self.NH, self.HS)
        k = self.wk(h).view(B, T, self.NKV, self.HS)
        v = self.wv(h).view(B, T, self.NKV, self.HS)

        def rope(t):
            a, b = t.reshape(t.shape[:-1] + (-1, 2)).unbind(-1)
            return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(3)

        q, k = rope(q), rope(k)
        if self.NKV != self.NH:
            k = k.repeat_interleave(self.NH // self.NKV, 2)
            v = v.repeat_interleave(self.NH // self.NKV, 2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        s = (q @ k.transpose(2, 3)) / math.sqrt(self.HS) + mask
        a = (F.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.wo(a)
        h = self.fn(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Llama(nn.Module):
    def __init__(self, D, Fh, L, NH, NKV, V, T):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.blocks = nn.ModuleList([Block(D, Fh, NH, NKV) for _ in range(L)])
        self.norm = RMSNorm(D)
        self.out = nn.Linear(D, V, bias=False)
        self.out.weight = self.emb.weight  # tied
        HS = D // NH
        freq = 1.0 / (10000.0 ** (torch.arange(0, HS, 2).float() / HS))
        ang = torch.outer(torch.arange(T).float(), freq)
        self.register_buffer("cos", torch.cos(ang)[None, :, None, :])
        self.register_buffer("sin", torch.sin(ang)[None, :, None, :])
        self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1))
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if n.endswith(("w3.weight", "wo.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, tok, tgt):
        x = self.emb(tok)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.mask)
        logits = self.out(self.norm(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="stories110M")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    D, Fh, L, NH, NKV, V = PRESETS[a.preset]
    m = Llama(D, Fh, L, NH, NKV, V, a.seq)
    decay = [p for p in m.parameters() if p.dim() >= 2]
    nodecay = [p for p in m.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    tok = torch.randint(0, V, (a.batch, a.seq))
    tgt = torch.randint(0, V, (a.batch, a.seq))
    ms = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = m(tok, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            ms.append(dt * 1e3)
    n_matmul = sum(p.numel() for n, p in m.named_parameters() if p.dim() == 2)
    flops = (6 * n_matmul + 12 * L * D * a.seq) * a.batch * a.seq
    med = statistics.median(ms)
    print(json.dumps({"bench": "torch_step", "preset": a.preset, "batch": a.batch, "seq": a.seq,
                      "threads": a.threads, "ms_median": round(med, 3), "ms_min": round(min(ms), 3),
                      "ms_max": round(max(ms), 3), "tokens_per_s": round(a.batch * a.seq / med * 1e3, 1),
                      "gflops": round(flops / med / 1e6, 2), "torch": torch.__version__,
                      "blas_core": blas_core()}))


def blas_core():
    """The OpenBLAS kernel this process runs (the library torch's BLAS calls resolve to)."""
    import ctypes
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return "unknown"


if __name__ == "__main__":
    main()
