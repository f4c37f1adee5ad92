#!/usr/bin/python3
"""PyTorch reference for fable: a Llama-2 exactly as llama2.c's model.py defines it, fp32,
deterministic, written out as binary fixtures that tests/model/test_torch_parity.c reads.

    /usr/bin/python3 tests/ref/llama_ref.py             # regenerate tests/fixtures/torch/*.fx
    /usr/bin/python3 tests/ref/llama_ref.py --out /tmp/x.fx --dim 48 --hidden 128 --layers 3 \
        --heads 6 --kv-heads 2 --vocab 100 --T 24 --batch 2 --seed 7      # any other config

(Debian's /usr/bin/python3 has torch 1.13 + numpy.) Everything here is independent of fable's
code: the weights are drawn by torch, the math is autograd's, the optimizer is torch.optim.AdamW.

Model (llama2.c model.py): h = E[tok]; per layer h += Wo·attn(RoPE(Wq·n(h)), RoPE(Wk·n(h)), Wv·n(h)),
h += W2·(silu(W1·n(h)) ⊙ W3·n(h)); logits = Wcls·n(h); loss = cross-entropy, mean over targets
!= -1 (ignore_index=-1). RMSNorm eps 1e-5. RoPE rotates adjacent pairs (2i, 2i+1) of each head by
pos·freq_i, freq_i = 1/10000^(2i/HS) computed in fp32 (as run.c and precompute_freqs_cis do).
GQA: query head h reads kv head h // (NH/NKV) (model.py's repeat_kv).

Fixture format (little-endian), see tests/model/fixture.h for the reader:
    magic  8 bytes  "FABLEFX1"
    count  uint32   number of records
    record: uint32 name_len, name (ASCII, no NUL), uint32 dtype (1 = float32, 2 = int32),
            uint32 ndim, uint32 dims[ndim], data (prod(dims) elements, row-major)
Records written:
    config        i32 [8]  dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len, tied
    optim         f32 [6]  lr, beta1, beta2, eps, weight_decay, grad_clip (<= 0: no clipping)
    tokens        i32 [S,B,T]  the batch of optimizer step s (s = 0 is also the gradient batch)
    targets       i32 [S,B,T]  -1 = ignored position
    param.<name>  f32      initial weights, fable's storage order and shapes (model.h):
                           tok_emb [V,D], rms_att [L,D], wq [L,D,D], wk [L,KVD,D], wv [L,KVD,D],
                           wo [L,D,D], rms_ffn [L,D], w1 [L,F,D], w2 [L,D,F], w3 [L,F,D],
                           rms_final [D], wcls [V,D] (untied only)
    logits        f32 [B,T,V]  batch 0, initial weights
    losses        f32 [B,T]    per-position cross-entropy (0 where ignored)
    loss          f32 [1]      mean loss over valid targets
    grad.<name>   f32      d(loss)/d(param), same shapes (tied: tok_emb holds both uses)
    opt.loss      f32 [S]  loss of step s (on batch s, before update s)
    opt.grad_norm f32 [S]  global L2 norm of all gradients at step s, before clipping
    final.<name>  f32      weights after the S AdamW updates
The optimizer: torch.optim.AdamW(lr, betas, eps), weight decay on the matrices (tok_emb, wq, wk,
wv, wo, w1, w2, w3, wcls) and 0 on the norm weights (llama2.c decays every 2-D parameter, i.e. the
same set); clipping by torch.nn.utils.clip_grad_norm_ when grad_clip > 0; grads zeroed each step.
"""
import argparse
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from fable_layout import tensor_shapes  # noqa: E402  (same directory)

NORM_EPS = 1e-5
ROPE_THETA = 10000.0
MATRICES = ("tok_emb", "wq", "wk", "wv", "wo", "w1", "w2", "w3", "wcls")


# ---- the model ---------------------------------------------------------------------------------

def rmsnorm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS) * w


def rope_tables(T, HS):
    """cos/sin [T, HS/2] of pos / 10000^(2i/HS), fp32 like run.c."""
    freq = 1.0 / (ROPE_THETA ** (torch.arange(0, HS, 2).float() / HS))
    ang = torch.outer(torch.arange(T).float(), freq)
    return torch.cos(ang), torch.sin(ang)


def rope(x, cos, sin):
    """x [B,T,H,HS]: rotate pairs (2i, 2i+1) by the angle of (t, i)."""
    xr, xi = x.reshape(x.shape[:-1] + (-1, 2)).unbind(-1)
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack([xr * c - xi * s, xr * s + xi * c], dim=-1).flatten(3)


def forward(cfg, P, tok, tgt):
    """Returns (logits [B,T,V], per-position losses [B,T], mean loss)."""
    B, T = tok.shape
    D, NH, NKV = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"]
    HS = D // NH
    cos, sin = rope_tables(T, HS)
    mask = torch.full((T, T), float("-inf")).triu(1)
    wcls = P["tok_emb"] if cfg["tied"] else P["wcls"]
    h = P["tok_emb"][tok]                                         # [B,T,D]
    for l in range(cfg["n_layers"]):
        xn = rmsnorm(h, P["rms_att"][l])
        q = (xn @ P["wq"][l].T).view(B, T, NH, HS)
        k = (xn @ P["wk"][l].T).view(B, T, NKV, HS)
        v = (xn @ P["wv"][l].T).view(B, T, NKV, HS)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        k = k.repeat_interleave(NH // NKV, dim=2)                 # model.py's repeat_kv
        v = v.repeat_interleave(NH // NKV, dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)   # [B,NH,T,HS]
        s = q @ k.transpose(2, 3) / math.sqrt(HS) + mask
        a = (F.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
        h = h + a @ P["wo"][l].T
        xn = rmsnorm(h, P["rms_ffn"][l])
        h = h + (F.silu(xn @ P["w1"][l].T) * (xn @ P["w3"][l].T)) @ P["w2"][l].T
    logits = rmsnorm(h, P["rms_final"]) @ wcls.T
    V = logits.shape[-1]
    losses = F.cross_entropy(logits.view(-1, V), tgt.reshape(-1), ignore_index=-1,
                             reduction="none").view(B, T)
    loss = losses.sum() / (tgt >= 0).sum()
    return logits, losses, loss




def init_params(cfg, std, gen):
    """llama2.c's init scaled to `std` (matrices N(0,std), w3/wo N(0,std/sqrt(2L))), with norm
    weights 1 + 0.1·N(0,1) so that the norm-weight gradients and scales are exercised."""
    P = {}
    for name, shape in tensor_shapes(cfg):
        if name.startswith("rms"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif name in ("w3", "wo"):
            t = torch.randn(shape, generator=gen) * (std / math.sqrt(2 * cfg["n_layers"]))
        else:
            t = torch.randn(shape, generator=gen) * std
        P[name] = t.float().requires_grad_(True)
    return P


def make_batches(cfg, S, B, T, ignore_frac, gen):
    """S batches of a learnable noisy chain x' = (5x + 3) mod V (prob .75) else uniform;
    targets are the next tokens; a fraction ignore_frac of targets set to -1."""
    V = cfg["vocab_size"]
    x = torch.empty(S, B, T + 1, dtype=torch.int64)
    x[:, :, 0] = torch.randint(0, V, (S, B), generator=gen)
    for t in range(T):
        det = (5 * x[:, :, t] + 3) % V
        rnd = torch.randint(0, V, (S, B), generator=gen)
        keep = torch.rand(S, B, generator=gen) < 0.75
        x[:, :, t + 1] = torch.where(keep, det, rnd)
    tok, tgt = x[:, :, :T].clone(), x[:, :, 1:].clone()
    if ignore_frac > 0:
        drop = torch.rand(S, B, T, generator=gen) < ignore_frac
        drop[:, 0, 0] = False                      # at least one valid target per batch
        tgt[drop] = -1
    return tok, tgt


# ---- the fixture file --------------------------------------------------------------------------

class FixtureWriter:
    def __init__(self):
        self.recs = []

    def add(self, name, arr):
        arr = np.ascontiguousarray(arr)
        if arr.dtype.kind == "f":
            arr, dt = arr.astype("<f4"), 1
        else:
            arr, dt = arr.astype("<i4"), 2
        b = name.encode("ascii")
        hdr = struct.pack("<I", len(b)) + b + struct.pack("<II", dt, arr.ndim)
        hdr += struct.pack("<%dI" % arr.ndim, *arr.shape)
        self.recs.append(hdr + arr.tobytes())

    def write(self, path):
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(b"FABLEFX1" + struct.pack("<I", len(self.recs)))
            for r in self.recs:
                f.write(r)
        os.replace(tmp, path)


def generate(a):
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    cfg = dict(dim=a.dim, hidden_dim=a.hidden, n_layers=a.layers, n_heads=a.heads,
               n_kv_heads=a.kv_heads or a.heads, vocab_size=a.vocab,
               seq_len=a.seq_len or a.T, tied=0 if a.untied else 1)
    D, NH, NKV = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"]
    assert D % NH == 0 and NH % NKV == 0 and (D // NH) % 2 == 0 and a.T <= cfg["seq_len"]
    P = init_params(cfg, a.init_std, gen)
    tok, tgt = make_batches(cfg, a.steps, a.batch, a.T, a.ignore_frac, gen)
    names = [n for n, _ in tensor_shapes(cfg)]

    w = FixtureWriter()
    w.add("config", np.array([cfg[k] for k in ("dim", "hidden_dim", "n_layers", "n_heads",
                                                "n_kv_heads", "vocab_size", "seq_len", "tied")]))
    w.add("optim", np.array([a.lr, a.beta1, a.beta2, a.eps, a.wd, a.clip], dtype=np.float64))
    w.add("tokens", tok.numpy())
    w.add("targets", tgt.numpy())
    for n in names:
        w.add("param." + n, P[n].detach().numpy())

    # gradients at the initial weights, batch 0
    logits, losses, loss = forward(cfg, P, tok[0], tgt[0])
    loss.backward()
    w.add("logits", logits.detach().numpy())
    w.add("losses", losses.detach().numpy())
    w.add("loss", np.array([loss.item()], dtype=np.float32))
    for n in names:
        w.add("grad." + n, P[n].grad.numpy())

    # S AdamW steps, one batch each
    for n in names:
        P[n].grad = None
    decay = [P[n] for n in names if n in MATRICES]
    nodecay = [P[n] for n in names if n not in MATRICES]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps, foreach=False)
    opt_loss, opt_norm = [], []
    for s in range(a.steps):
        opt.zero_grad(set_to_none=True)
        _, _, loss = forward(cfg, P, tok[s], tgt[s])
        loss.backward()
        params = [P[n] for n in names]
        if a.clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, a.clip)
        else:
            norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params))
        opt.step()
        opt_loss.append(loss.item())
        opt_norm.append(float(norm))
    w.add("opt.loss", np.array(opt_loss, dtype=np.float32))
    w.add("opt.grad_norm", np.array(opt_norm, dtype=np.float32))
    for n in names:
        w.add("final." + n, P[n].detach().numpy())
    w.write(a.out)
    if not a.quiet:
        nparams = sum(P[n].numel() for n in names)
        print("%s: %s B=%d T=%d, %d params, loss %.6f, step losses %s, grad norms %s" % (
            a.out, cfg, a.batch, a.T, nparams, opt_loss[0],
            " ".join("%.5f" % x for x in opt_loss), " ".join("%.4f" % x for x in opt_norm)))


# The committed fixtures (tests/fixtures/torch/): a GQA model with an untied classifier and no
# clipping, and a tied multi-head model with ignored targets, odd sizes, and active clipping.
COMMITTED = {
    "gqa_untied.fx": "--dim 32 --hidden 64 --layers 2 --heads 4 --kv-heads 2 --vocab 64 "
                     "--seq-len 32 --T 16 --batch 2 --untied --lr 1e-3 --clip 0 --seed 1",
    "tied_mha.fx": "--dim 24 --hidden 40 --layers 2 --heads 3 --kv-heads 3 --vocab 50 "
                   "--T 12 --batch 3 --lr 3e-3 --clip 1.0 --ignore-frac 0.1 --seed 2",
}


def parser():
    p = argparse.ArgumentParser(description="Write PyTorch reference fixtures for fable (see the "
                                "module docstring and docs/testing.md).")
    p.add_argument("--out", help="fixture to write (default: regenerate the committed ones)")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=0, help="default: = heads")
    p.add_argument("--vocab", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=0, help="model seq_len (default: T)")
    p.add_argument("--T", type=int, default=16, help="tokens per row")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--untied", action="store_true", help="separate classifier weights")
    p.add_argument("--steps", type=int, default=10, help="AdamW steps (batches)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--wd", type=float, default=0.1, help="weight decay on matrices")
    p.add_argument("--clip", type=float, default=0.0, help="global grad-norm clip (0 = off)")
    p.add_argument("--ignore-frac", type=float, default=0.0, help="fraction of targets = -1")
    p.add_argument("--init-std", type=float, default=0.1, help="std of the matrices")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    p = parser()
    a = p.parse_args(argv)
    if a.out:
        generate(a)
        return
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = os.path.join(here, "..", "fixtures", "torch")
    for fname, args in COMMITTED.items():
        b = p.parse_args(args.split())
        b.out = os.path.normpath(os.path.join(outdir, fname))
        b.quiet = a.quiet
        generate(b)


if __name__ == "__main__":
    main(sys.argv[1:])
