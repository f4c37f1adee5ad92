#!/usr/bin/python3
"""PyTorch twin of `fable train --init MODEL.bin --sampler sequential`: the same recipe, run in
PyTorch (fp32, one thread, deterministic), so that fable's training loop can be checked loss for
loss (tests/cli/train_parity.sh against the committed fixtures in tests/fixtures/train/, and
tests/ref/check_train_parity.sh on any config and seed). See docs/testing.md.

    # train in PyTorch exactly as fable does; writes/prints JSON (needs torch: /usr/bin/python3)
    /usr/bin/python3 tests/ref/train_ref.py --init M.bin --train SHARD [--recipe ane|llama2c] \
        [--batch B --seq T --accum K --steps N --lr X --min-lr X --warmup N \
         --schedule constant|cosine --optimizer adamw|adam --beta1 X --beta2 X --eps X \
         --weight-decay X --grad-clip X] [--out RESULT.json]
    # a random llama2.c version-0 init model (no torch or numpy needed)
    python3 tests/ref/train_ref.py --make-init OUT.bin --dim 32 --hidden 64 --layers 2 \
        --heads 4 --kv-heads 2 --vocab 512 --seq-len 64 [--untied] --seed 1 [--init-std 0.02]
    # the init model of a committed fixture (checks its sha256), a fixture field, a comparison
    python3 tests/ref/train_ref.py --make-init OUT.bin --like tests/fixtures/train/X.json
    python3 tests/ref/train_ref.py --get tests/fixtures/train/X.json fable_args
    python3 tests/ref/train_ref.py --compare LOG.jsonl --expect X.json [--tol 1e-4]
    # regenerate tests/fixtures/train/*.json (needs torch and ./fable built, for the shard)
    /usr/bin/python3 tests/ref/train_ref.py --regen
    # check this loop itself against the known-good tests/fixtures/torch optimizer steps
    /usr/bin/python3 tests/ref/train_ref.py --self-check

What "exactly as fable does" means (src/train/train.c, src/train/step.c, src/data/loader.c,
src/cli/cmd_train.c, read and re-implemented here, not imported):
- data: the shard's ids (32-byte "FBLTOKS1" header, then uint16); W = (n-1)//T windows, window k
  = ids[k*T .. k*T+T] (inputs ids[kT..kT+T), targets shifted by one); LOADER_SEQUENTIAL serves
  windows 0, 1, ..., W-1, then starts again at 0 (next epoch). Row b of a micro-step is the next
  window, so micro-step i (0-based, counting across updates) holds windows i*B .. i*B+B-1 mod W.
- a micro-step's loss is the mean cross-entropy over its B*T targets (llama_ref.forward, the
  model checked against llama2.c's model.py); gradients are summed over the `accum` micro-steps
  of an update and scaled by float32(1/accum) (= llama2.c's loss/accum, to rounding);
- the reported grad norm is the global L2 norm of those averaged gradients, before clipping;
  clipping is torch.nn.utils.clip_grad_norm_(params, clip) (coef clip/(norm+1e-6)) when clip > 0;
- the optimizer is torch.optim.AdamW (decoupled decay; two parameter groups: weight_decay on
  tok_emb, wq, wk, wv, wo, w1, w2, w3, wcls, 0 on the rms_* norms), or torch.optim.Adam with no
  decay for --optimizer adam; step u (1-based) uses lr = train_lr(u):
      u <= warmup (warmup > 0): lr * u / warmup                      (float32 arithmetic)
      constant:                 lr
      cosine, u >= steps:       min_lr
      cosine:                   min_lr + 0.5 (1 + cos(pi (u-warmup)/(steps-warmup))) (lr - min_lr)
- recipe defaults are fable's: ane = B1 T256 K10, 1000 updates, Adam-style (wd 0), lr 3e-4,
  betas 0.9/0.999, eps 1e-8, no clip, constant, min_lr = lr (0 if --schedule cosine); llama2c = B32 T256 K4, 100000
  updates, lr 5e-4, min_lr 0, warmup 1000, cosine, betas 0.9/0.95, eps 1e-8, wd 0.1, clip 1.0.
  As in fable, hyper-parameters are float32 values; --seq defaults to min(recipe seq, seq_len).

The init model (--make-init): llama2.c version 0 (7 int32: dim, hidden_dim, n_layers, n_heads,
n_kv_heads, vocab_size (negative = untied classifier), seq_len; then float32 tok_emb, rms_att,
wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_cis_real [seq_len, HS/2], freq_cis_imag,
wcls when untied). Weights follow llama2.c's init (matrices N(0, std), w3 and wo
N(0, std/sqrt(2 n_layers)), norms 1 (+ norm_noise N(0,1) if asked)) where N(0,1) is drawn as
Irwin-Hall (sum of 12 uniforms - 6) from splitmix64(seed), in exact binary arithmetic, so the
file is byte-identical on every machine, with or without torch: CI rebuilds the committed
fixtures' models from their seeds and checks the sha256 instead of storing the files.
"""
import argparse
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
from fable_layout import tensor_shapes  # noqa: E402  (same directory)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIXDIR = os.path.join(ROOT, "tests", "fixtures", "train")
FORMAT = "fable-train-parity-1"
SHARD_MAGIC = b"FBLTOKS1"
MATRICES = ("tok_emb", "wq", "wk", "wv", "wo", "w1", "w2", "w3", "wcls")


def f32(x):
    """Round a Python float to float32 (IEEE round to nearest even)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


# ---- the init model (stdlib only) ---------------------------------------------------------------



def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


class SplitMix64:
    M = (1 << 64) - 1

    def __init__(self, seed):
        self.s = seed & self.M

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & self.M
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.M
        return z ^ (z >> 31)

    def normals(self, n):
        """n approximately N(0,1) values: sum of 12 uniforms (k + 0.5)/65536 minus 6, exact in
        double (every partial sum is a multiple of 2^-17 below 12)."""
        out = [0.0] * n
        for i in range(n):
            acc = 0
            for _ in range(3):
                r = self.next()
                acc += (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48)
            out[i] = (acc + 6) / 65536.0 - 6.0
        return out


def make_cfg(dim, hidden, layers, heads, kv_heads, vocab, seq_len, untied):
    cfg = dict(dim=dim, hidden_dim=hidden, n_layers=layers, n_heads=heads,
               n_kv_heads=kv_heads or heads, vocab_size=vocab, seq_len=seq_len, tied=0 if untied else 1)
    D, NH, NKV = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"]
    if min(cfg[k] for k in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                            "seq_len")) <= 0:
        raise SystemExit("train_ref: every shape value must be positive: %s" % cfg)
    if D % NH or NH % NKV or (D // NH) % 2:
        raise SystemExit("train_ref: need dim %% heads == 0, heads %% kv_heads == 0 and an even head "
                         "size (dim %d, heads %d, kv_heads %d)" % (D, NH, NKV))
    return cfg


def write_init(path, cfg, seed, std=0.02, norm_noise=0.0):
    """Write a llama2.c version-0 model with llama2.c's init (see the module docstring)."""
    rng = SplitMix64(seed)
    L = cfg["n_layers"]
    HS = cfg["dim"] // cfg["n_heads"]
    half = HS // 2
    hdr = struct.pack("<7i", cfg["dim"], cfg["hidden_dim"], L, cfg["n_heads"], cfg["n_kv_heads"],
                      cfg["vocab_size"] if cfg["tied"] else -cfg["vocab_size"], cfg["seq_len"])
    blobs = {}
    for name, shape in tensor_shapes(cfg):
        z = rng.normals(numel(shape))
        if name.startswith("rms"):
            vals = [1.0 + norm_noise * x for x in z] if norm_noise else [1.0] * len(z)
        else:
            s = std / math.sqrt(2 * L) if name in ("w3", "wo") else std
            vals = [s * x for x in z]
        blobs[name] = struct.pack("<%df" % len(vals), *vals)
    # RoPE tables as llama2.c's export writes them (fable skips them; the size must match)
    cos_t, sin_t = [], []
    for pos in range(cfg["seq_len"]):
        for i in range(half):
            ang = pos * (1.0 / (10000.0 ** ((2 * i) / HS)))
            cos_t.append(math.cos(ang))
            sin_t.append(math.sin(ang))
    rope = struct.pack("<%df" % len(cos_t), *cos_t) + struct.pack("<%df" % len(sin_t), *sin_t)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(hdr)
        for name, _ in tensor_shapes(cfg):
            if name != "wcls":
                f.write(blobs[name])
        f.write(rope)
        if not cfg["tied"]:
            f.write(blobs["wcls"])
    os.replace(tmp, path)


def read_model(path):
    """(cfg, {name: list of float32 bytes}) from a llama2.c version-0 .bin; checks the size."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 28:
        raise SystemExit("train_ref: %s: shorter than the 28-byte llama2.c header" % path)
    d, hd, L, nh, nkv, v, sl = struct.unpack("<7i", data[:28])
    cfg = make_cfg(d, hd, L, nh, nkv, abs(v), sl, v < 0)
    shapes = tensor_shapes(cfg)
    n_rope = sl * (d // nh // 2) * 2
    n_params = sum(numel(s) for _, s in shapes)
    want = 28 + 4 * (n_params + n_rope)
    if len(data) != want:
        raise SystemExit("train_ref: %s: %d bytes, the header (%s) needs %d" % (path, len(data), cfg, want))
    out, off = {}, 28
    for name, shape in shapes:
        if name == "wcls":
            off += 4 * n_rope
        n = numel(shape)
        out[name] = data[off:off + 4 * n]
        off += 4 * n
    return cfg, out


def weights_sha256(path):
    """sha256 of a llama2.c v0 file without its RoPE tables (which fable skips and which are the
    only bytes computed with libm's cos/sin, so the only ones that could differ between machines)."""
    cfg, t = read_model(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(28))
    for name, _ in tensor_shapes(cfg):
        h.update(t[name])
    return h.hexdigest()


def read_shard(path):
    """(vocab, bytes of the uint16 ids) of a fable token shard (include/fable/data.h)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 32 or data[:8] != SHARD_MAGIC:
        raise SystemExit("train_ref: %s is not a fable token shard (magic %s expected)" % (path, SHARD_MAGIC))
    version, vocab, n, hbytes = struct.unpack("<IIQI", data[8:28])
    if version != 1 or hbytes != 32 or len(data) != 32 + 2 * n:
        raise SystemExit("train_ref: %s: bad shard header (version %d, header %d bytes, %d tokens, "
                         "file %d bytes)" % (path, version, hbytes, n, len(data)))
    return vocab, n, data[32:]


# ---- the recipe -----------------------------------------------------------------------------------

RECIPES = {
    # src/train/train.c train_recipe(); min_lr None = follows the schedule (cmd_train.c: when
    # --min-lr is not given, min_lr = lr for a constant schedule and 0 for cosine)
    "ane": dict(batch=1, seq=256, accum=10, steps=1000, lr=3e-4, min_lr=None, warmup=0,
                schedule="constant", optimizer="adam", beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, grad_clip=0.0),
    "llama2c": dict(batch=32, seq=256, accum=4, steps=100000, lr=5e-4, min_lr=None, warmup=1000,
                    schedule="cosine", optimizer="adamw", beta1=0.9, beta2=0.95, eps=1e-8,
                    weight_decay=0.1, grad_clip=1.0),
}
RECIPE_KEYS = ("batch", "seq", "accum", "steps", "lr", "min_lr", "warmup", "schedule", "optimizer",
               "beta1", "beta2", "eps", "weight_decay", "grad_clip")


def resolve_recipe(a, seq_len):
    r = dict(RECIPES[a.recipe], recipe=a.recipe)
    seq_explicit = a.seq is not None
    for k in RECIPE_KEYS:
        v = getattr(a, k)
        if v is not None:
            r[k] = v
    if r["min_lr"] is None:
        r["min_lr"] = r["lr"] if r["schedule"] == "constant" else 0.0
    if r["optimizer"] == "adam":
        if a.weight_decay:
            raise SystemExit("train_ref: --optimizer adam has no weight decay (as in fable)")
        r["weight_decay"] = 0.0
    if r["seq"] > seq_len:
        if seq_explicit:
            raise SystemExit("train_ref: --seq %d exceeds the model's seq_len %d" % (r["seq"], seq_len))
        r["seq"] = seq_len
    for k in ("batch", "seq", "accum", "steps"):
        if r[k] <= 0:
            raise SystemExit("train_ref: --%s must be positive" % k)
    return r


def fable_args(r):
    """The `fable train` flags that request recipe r, every value explicit."""
    out = ["--recipe", r["recipe"]]
    for k in RECIPE_KEYS:
        v = r[k]
        out += ["--" + k.replace("_", "-"), repr(v) if isinstance(v, float) else str(v)]
    return out + ["--sampler", "sequential"]


def train_lr(r, u):
    """src/train/train.c train_lr() with its float32/double arithmetic."""
    lr, min_lr, warmup, steps = f32(r["lr"]), f32(r["min_lr"]), r["warmup"], r["steps"]
    if warmup > 0 and u <= warmup:
        return f32(f32(lr * float(u)) / float(warmup))
    if r["schedule"] == "constant":
        return lr
    if u >= steps:
        return min_lr
    ratio = (u - warmup) / (steps - warmup)
    coeff = 1.0 - ratio if r["schedule"] == "linear" else 0.5 * (1.0 + math.cos(math.pi * ratio))
    return f32(min_lr + coeff * f32(lr - min_lr))


# ---- training in PyTorch ----------------------------------------------------------------------------

def train(init_path, shard_path, r, quiet=False, batches=None, final=None):
    """Train as fable does; returns the result dict (see the module docstring). For checking this
    loop against tests/fixtures/torch: batches(i) -> (tokens, targets) [B,T] replaces the shard
    for micro-step i, and `final` (a dict) receives the weights after the last update."""
    import numpy as np
    import torch
    sys.path.insert(0, HERE)
    import llama_ref

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cfg, raw = read_model(init_path)
    B, T, K = r["batch"], r["seq"], r["accum"]
    if batches is None:
        vocab, n, ids_b = read_shard(shard_path)
        if vocab != cfg["vocab_size"]:
            raise SystemExit("train_ref: %s has vocab %d, the model %d" % (shard_path, vocab,
                                                                          cfg["vocab_size"]))
        ids = torch.from_numpy(np.frombuffer(ids_b, dtype="<u2").astype(np.int64))
        if n and int(ids.max()) >= vocab:
            raise SystemExit("train_ref: %s holds an id >= vocab %d" % (shard_path, vocab))
        if n < T + 1:
            raise SystemExit("train_ref: %s has %d tokens, need T+1 = %d" % (shard_path, n, T + 1))
        W = (n - 1) // T
    else:
        vocab, n, W = cfg["vocab_size"], 0, 0
    P = {}
    for name, shape in tensor_shapes(cfg):
        t = torch.from_numpy(np.frombuffer(raw[name], dtype="<f4").astype(np.float32).reshape(shape))
        P[name] = t.clone().requires_grad_(True)
    names = [nm for nm, _ in tensor_shapes(cfg)]
    params = [P[nm] for nm in names]
    decay = [P[nm] for nm in names if nm in MATRICES]
    nodecay = [P[nm] for nm in names if nm not in MATRICES]
    betas = (f32(r["beta1"]), f32(r["beta2"]))
    eps, wd, clip = f32(r["eps"]), f32(r["weight_decay"]), f32(r["grad_clip"])
    if r["optimizer"] == "adam":
        opt = torch.optim.Adam(params, lr=f32(r["lr"]), betas=betas, eps=eps, weight_decay=0.0,
                               foreach=False)
    else:
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                                 {"params": nodecay, "weight_decay": 0.0}],
                                lr=f32(r["lr"]), betas=betas, eps=eps, foreach=False)
    scale = f32(1.0 / K)
    pos = 0  # next window (LOADER_SEQUENTIAL)
    micro_loss, micro_windows, lrs, norms, update_loss = [], [], [], [], []
    for u in range(1, r["steps"] + 1):
        lr = train_lr(r, u)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        losses = []
        for _ in range(K):
            if batches is None:
                rows = []
                for _ in range(B):
                    if pos >= W:
                        pos = 0
                    rows.append(ids[pos * T: pos * T + T + 1])
                    micro_windows.append(pos)
                    pos += 1
                x = torch.stack(rows)
                tok, tgt = x[:, :T].contiguous(), x[:, 1:].contiguous()
            else:
                tok, tgt = batches(len(micro_loss) + len(losses))
            _, _, loss = llama_ref.forward(cfg, P, tok, tgt)
            loss.backward()
            losses.append(loss.item())
        with torch.no_grad():
            for p in params:
                p.grad.mul_(scale)
        if clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
        else:
            norm = torch.norm(torch.stack([torch.norm(p.grad.detach(), 2.0) for p in params]), 2.0)
        opt.step()
        micro_loss += losses
        update_loss.append(sum(losses) / K)
        lrs.append(lr)
        norms.append(float(norm))
        if not quiet:
            print("update %d/%d | loss %.6f | lr %.4e | grad norm %.6f" % (u, r["steps"], update_loss[-1],
                                                                        lr, norms[-1]), file=sys.stderr)
    if final is not None:
        final.update({nm: P[nm].detach().clone() for nm in names})
    nparams = sum(p.numel() for p in params)
    return dict(
        format=FORMAT,
        model=dict(cfg, params=nparams, sha256=sha256_file(init_path),
                   sha256_weights=weights_sha256(init_path)),
        shard=dict(tokens=n, vocab=vocab, windows=W, sha256=sha256_file(shard_path) if shard_path else None),
        recipe=dict(r, sampler="sequential"),
        fable_args=" ".join(fable_args(r)),
        torch=torch.__version__,
        micro_loss=micro_loss,
        micro_window=micro_windows,
        update_lr=lrs,
        update_loss=update_loss,
        grad_norm=norms)


# ---- comparison with a fable log (stdlib only) -------------------------------------------------

def read_log(path):
    steps, batches = [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            if rec.get("type") == "step":
                steps.append(rec)
            elif rec.get("type") == "batch":
                batches.append(rec)
    return steps, batches


def compare(log, expect, tol, label=None):
    """Every micro-step loss and every update's grad norm (and lr) of a fable log against the
    reference; relative error |fable - ref| / |ref| (absolute where ref = 0). Returns 0 if all
    are within tol."""
    with open(expect) as f:
        ref = json.load(f)
    steps, batches = read_log(log)
    label = label or os.path.basename(expect)
    bad = []
    if len(steps) != len(ref["micro_loss"]) or len(batches) != len(ref["grad_norm"]):
        print("%s: fable logged %d micro-steps and %d updates, the reference has %d and %d" % (
            label, len(steps), len(batches), len(ref["micro_loss"]), len(ref["grad_norm"])))
        return 1

    def rel(a, b):
        return abs(a - b) / abs(b) if b != 0 else abs(a - b)

    worst = {}
    for key, fab, want, where in (
            ("loss", [s["loss"] for s in steps], ref["micro_loss"], "micro-step"),
            ("grad_norm", [b["grad_norm"] for b in batches], ref["grad_norm"], "update"),
            ("lr", [b["lr"] for b in batches], ref["update_lr"], "update")):
        w = (0.0, 0)
        for i, (a, b) in enumerate(zip(fab, want)):
            if a is None:
                bad.append("%s %d: fable's %s is null (not finite)" % (where, i + 1, key))
                continue
            e = rel(a, b)
            if e > w[0]:
                w = (e, i)
            if e > tol:
                bad.append("%s %d: %s fable %.6g, PyTorch %.9g (relative error %.2e)" % (
                    where, i + 1, key, a, b, e))
        worst[key] = w
        print("%s: %d %ss, worst relative error in %s %.2e (%s %d)" % (
            label, len(want), where, key, w[0], where, w[1] + 1))
    if bad:
        print("%s: %d values beyond the relative tolerance %.0e:" % (label, len(bad), tol))
        for b in bad[:20]:
            print("  " + b)
        return 1
    print("%s: ok (tolerance %.0e relative)" % (label, tol))
    return 0


# ---- the committed fixtures ---------------------------------------------------------------------

SHARD_SOURCE = "tinystories/tinystories_v2_sample_cs336.txt"
SHARD_TOKENIZER = "stories260K/tok512.model"
SHARD_COMMAND = ("./fable tokenize --quiet --tokenizer $FABLE_DATA/%s --train-out SHARD $FABLE_DATA/%s"
                 % (SHARD_TOKENIZER, SHARD_SOURCE))

COMMITTED = {
    # llama2.c's recipe (AdamW 0.9/0.95, wd 0.1 on matrices, clip 1.0, warmup + cosine), tied GQA
    "llama2c_tied.json": dict(
        init=dict(dim=32, hidden=64, layers=2, heads=4, kv_heads=2, vocab=512, seq_len=64,
                  untied=False, seed=1, init_std=0.02, norm_noise=0.0),
        recipe="--recipe llama2c --batch 2 --seq 32 --accum 2 --steps 8 --warmup 3 --schedule cosine "
               "--lr 5e-3 --min-lr 5e-4 --weight-decay 0.1 --grad-clip 1.0"),
    # the reference's (ane) recipe: Adam 0.9/0.999, no decay, no clip, constant lr; untied
    # classifier; 30 windows of 64 from a 28-window shard, so the loader wraps to a second epoch
    "ane_untied.json": dict(
        init=dict(dim=32, hidden=64, layers=2, heads=4, kv_heads=2, vocab=512, seq_len=64,
                  untied=True, seed=2, init_std=0.02, norm_noise=0.0),
        recipe="--recipe ane --optimizer adam --batch 1 --seq 64 --accum 3 --steps 10 --lr 3e-3"),
}


def init_args_cmd(i):
    s = "--dim %d --hidden %d --layers %d --heads %d --kv-heads %d --vocab %d --seq-len %d --seed %d " \
        "--init-std %r --norm-noise %r" % (i["dim"], i["hidden"], i["layers"], i["heads"], i["kv_heads"],
                                           i["vocab"], i["seq_len"], i["seed"], i["init_std"], i["norm_noise"])
    return s + (" --untied" if i["untied"] else "")


def sentencepiece_check(shard_path, data_dir):
    """Independent check of the shard: [BOS] + sentencepiece ids of every story (split at
    <|endoftext|>, str.strip(), empty ones dropped). Returns a note for the fixture."""
    try:
        import sentencepiece
    except ImportError:
        return "not checked (no sentencepiece)"
    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(data_dir, SHARD_TOKENIZER))
    with open(os.path.join(data_dir, SHARD_SOURCE), encoding="utf-8") as f:
        text = f.read()
    ids = []
    for story in text.split("<|endoftext|>"):
        story = story.strip()
        if story:
            ids += [1] + sp.encode(story)
    _, n, b = read_shard(shard_path)
    got = list(struct.unpack("<%dH" % n, b))
    if got != ids:
        raise SystemExit("train_ref: fable tokenize's shard differs from sentencepiece's ids")
    return "identical to [BOS] + sentencepiece ids per story"


def regen(a):
    data = a.data or os.environ.get("FABLE_DATA") or os.path.join(ROOT, "..", "shared", "data")
    fable = os.path.join(ROOT, "fable")
    os.makedirs(FIXDIR, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shard = os.path.join(tmp, "shard.bin")
        subprocess.run([fable, "tokenize", "--quiet", "--tokenizer", os.path.join(data, SHARD_TOKENIZER),
                        "--train-out", shard, os.path.join(data, SHARD_SOURCE)], check=True,
                       stdout=subprocess.DEVNULL, cwd=tmp)
        sp_note = sentencepiece_check(shard, data)
        for fname, spec in COMMITTED.items():
            i = spec["init"]
            model = os.path.join(tmp, "init.bin")
            cfg = make_cfg(i["dim"], i["hidden"], i["layers"], i["heads"], i["kv_heads"], i["vocab"],
                           i["seq_len"], i["untied"])
            write_init(model, cfg, i["seed"], i["init_std"], i["norm_noise"])
            b = parser().parse_args(spec["recipe"].split())
            r = resolve_recipe(b, cfg["seq_len"])
            res = train(model, shard, r, quiet=a.quiet)
            res["shard"].update(source="$FABLE_DATA/" + SHARD_SOURCE, tokenizer="$FABLE_DATA/" + SHARD_TOKENIZER,
                                command=SHARD_COMMAND, sentencepiece=sp_note)
            res["model"].update(make_init=init_args_cmd(i))
            res["recipe_flags"] = spec["recipe"]
            res["regenerate"] = "/usr/bin/python3 tests/ref/train_ref.py --regen"
            out = os.path.join(FIXDIR, fname)
            with open(out + ".tmp", "w") as f:
                json.dump(res, f, indent=1)
                f.write("\n")
            os.replace(out + ".tmp", out)
            print("%s: %d micro-steps, losses %.4f .. %.4f, grad norms %.4f .. %.4f" % (
                out, len(res["micro_loss"]), res["micro_loss"][0], res["micro_loss"][-1],
                res["grad_norm"][0], res["grad_norm"][-1]))


# ---- checking this reference itself ------------------------------------------------------------

def read_fx(path):
    """Records of a tests/fixtures/torch/*.fx file (format: tests/ref/llama_ref.py)."""
    import numpy as np
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"FABLEFX1", path
    (count,), off, rec = struct.unpack("<I", data[8:12]), 12, {}
    for _ in range(count):
        (nl,) = struct.unpack("<I", data[off:off + 4])
        name = data[off + 4:off + 4 + nl].decode()
        off += 4 + nl
        dt, nd = struct.unpack("<II", data[off:off + 8])
        dims = struct.unpack("<%dI" % nd, data[off + 8:off + 8 + 4 * nd])
        off += 8 + 4 * nd
        cnt = numel(dims)
        rec[name] = np.frombuffer(data[off:off + 4 * cnt], dtype="<f4" if dt == 1 else "<i4").reshape(dims)
        off += 4 * cnt
    return rec


def write_model_from(path, cfg, tensors):
    """A llama2.c v0 file holding the given tensors (zero RoPE tables: fable and we skip them)."""
    hs = cfg["dim"] // cfg["n_heads"]
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", cfg["dim"], cfg["hidden_dim"], cfg["n_layers"], cfg["n_heads"],
                            cfg["n_kv_heads"], cfg["vocab_size"] * (1 if cfg["tied"] else -1), cfg["seq_len"]))
        for name, _ in tensor_shapes(cfg):
            if name == "wcls":
                f.write(b"\0" * (4 * cfg["seq_len"] * hs))
            f.write(tensors[name].astype("<f4").tobytes())
        if cfg["tied"]:
            f.write(b"\0" * (4 * cfg["seq_len"] * hs))


def self_check():
    """(1) With accum 1 and a constant lr this loop must reproduce the optimizer steps of the
    known-good fixtures in tests/fixtures/torch (written by llama_ref.py, which fable matches to
    1e-5): the step losses, grad norms and final weights. (2) Accumulation: K micro-steps of B rows
    must equal (to rounding) one micro-step of the same K*B rows (all targets valid, so the mean
    of the K means is the mean over K*B*T). (3) train_lr against hand-computed values."""
    import numpy as np
    import torch
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for fx in sorted(os.listdir(os.path.join(ROOT, "tests", "fixtures", "torch"))):
            rec = read_fx(os.path.join(ROOT, "tests", "fixtures", "torch", fx))
            c = [int(x) for x in rec["config"]]
            cfg = dict(dim=c[0], hidden_dim=c[1], n_layers=c[2], n_heads=c[3], n_kv_heads=c[4],
                       vocab_size=c[5], seq_len=c[6], tied=c[7])
            lr, b1, b2, eps, wd, clip = [float(x) for x in rec["optim"]]
            S, B, T = rec["tokens"].shape
            model = os.path.join(tmp, "m.bin")
            write_model_from(model, cfg, {n: rec["param." + n] for n, _ in tensor_shapes(cfg)})
            r = dict(recipe="llama2c", batch=B, seq=T, accum=1, steps=S, lr=lr, min_lr=lr, warmup=0,
                     schedule="constant", optimizer="adamw", beta1=b1, beta2=b2, eps=eps,
                     weight_decay=wd, grad_clip=clip)
            tok = torch.from_numpy(rec["tokens"].astype(np.int64))
            tgt = torch.from_numpy(rec["targets"].astype(np.int64))
            final = {}
            res = train(model, None, r, quiet=True, batches=lambda i: (tok[i], tgt[i]), final=final)
            e_loss = max(abs(a - b) / abs(b) for a, b in zip(res["micro_loss"], rec["opt.loss"]))
            e_norm = max(abs(a - b) / abs(b) for a, b in zip(res["grad_norm"], rec["opt.grad_norm"]))
            e_w = max(float(np.abs(final[n].numpy() - rec["final." + n]).max()) for n, _ in tensor_shapes(cfg))
            good = e_loss < 1e-6 and e_norm < 1e-6 and e_w < 1e-6
            ok &= good
            print("self-check %s (%d steps, clip %g): step losses %.1e, grad norms %.1e, final weights "
                  "max abs %.1e: %s" % (fx, S, clip, e_loss, e_norm, e_w, "ok" if good else "FAIL"))
        # (2) accumulation
        cfg = make_cfg(32, 64, 2, 4, 2, 64, 16, False)
        model = os.path.join(tmp, "a.bin")
        write_init(model, cfg, 7, 0.1, 0.1)
        g = torch.Generator().manual_seed(3)
        x = torch.randint(0, 64, (12, 16 + 1), generator=g)
        base = dict(recipe="llama2c", seq=16, steps=2, lr=1e-2, min_lr=0.0, warmup=0, schedule="constant",
                    optimizer="adamw", beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=0.5)
        K, Bm = 3, 2
        fa, fb = {}, {}
        ra = train(model, None, dict(base, batch=Bm, accum=K), quiet=True, final=fa,
                   batches=lambda i: (x[i * Bm:(i + 1) * Bm, :16], x[i * Bm:(i + 1) * Bm, 1:]))
        rb = train(model, None, dict(base, batch=K * Bm, accum=1), quiet=True, final=fb,
                   batches=lambda i: (x[i * K * Bm:(i + 1) * K * Bm, :16], x[i * K * Bm:(i + 1) * K * Bm, 1:]))
        e_loss = max(abs(a - b) / b for a, b in zip(ra["update_loss"], rb["micro_loss"]))
        e_norm = max(abs(a - b) / b for a, b in zip(ra["grad_norm"], rb["grad_norm"]))
        _, raw = read_model(model)
        w0 = {n: torch.from_numpy(np.frombuffer(raw[n], dtype="<f4").reshape(fa[n].shape).copy()) for n in fa}
        # the updates (final - initial), relative L2 (Adam turns fp32 noise in near-zero gradients
        # into weight differences up to ~lr, so max-abs weight differences are not a fair measure)
        e_w = math.sqrt(sum(float(((fa[n] - fb[n]) ** 2).sum()) for n in fa) /
                        sum(float(((fb[n] - w0[n]) ** 2).sum()) for n in fa))
        good = e_loss < 1e-5 and e_norm < 1e-5 and e_w < 1e-4 and rb["grad_norm"][0] > 0.5
        ok &= good
        print("self-check accumulation (accum %d x batch %d vs accum 1 x batch %d, clip active): update "
              "losses %.1e, grad norms %.1e, weight updates rel L2 %.1e: %s" % (K, Bm, K * Bm, e_loss, e_norm, e_w,
                                                                         "ok" if good else "FAIL"))
    # (3) the schedule: warmup 3 of 8 updates, lr 5e-3 -> min 5e-4
    r = dict(lr=5e-3, min_lr=5e-4, warmup=3, steps=8, schedule="cosine")
    want = [5e-3 / 3, 1e-2 / 3, 5e-3] + [5e-4 + 0.5 * (1 + math.cos(math.pi * (u - 3) / 5)) * 4.5e-3
                                         for u in range(4, 9)]
    e = max(abs(train_lr(r, u) - w) / w for u, w in zip(range(1, 9), want))
    lin = [5e-4 + (1 - (u - 3) / 5) * 4.5e-3 for u in range(4, 9)]
    e = max(e, max(abs(train_lr(dict(r, schedule="linear"), u) - w) / w for u, w in zip(range(4, 9), lin)))
    good = e < 1e-6 and train_lr(r, 8) == f32(5e-4) and train_lr(dict(r, schedule="constant"), 5) == f32(5e-3)
    ok &= good
    print("self-check train_lr: %.1e: %s" % (e, "ok" if good else "FAIL"))
    return 0 if ok else 1


# ---- command line -----------------------------------------------------------------------------------

def parser():
    p = argparse.ArgumentParser(description="PyTorch twin of `fable train --init M.bin --sampler "
                                "sequential` (see the module docstring and docs/testing.md)")
    p.add_argument("--init", help="llama2.c v0 model to start from")
    p.add_argument("--train", help="fable token shard")
    p.add_argument("--out", help="write the result JSON here (default: stdout)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="ane")
    for k in ("batch", "seq", "accum", "steps", "warmup"):
        p.add_argument("--" + k, type=int)
    for k in ("lr", "min_lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip"):
        p.add_argument("--" + k.replace("_", "-"), dest=k, type=float)
    p.add_argument("--schedule", choices=("constant", "cosine", "linear"))
    p.add_argument("--optimizer", choices=("adamw", "adam"))
    p.add_argument("--sampler", choices=("sequential",), default="sequential",
                   help="only sequential (fable's other samplers are random)")
    g = p.add_argument_group("init model (--make-init OUT.bin)")
    g.add_argument("--make-init", metavar="OUT")
    g.add_argument("--like", metavar="FIXTURE.json", help="the shape and seed of a fixture's model "
                   "(then the file's sha256 must match the fixture's)")
    g.add_argument("--dim", type=int, default=32)
    g.add_argument("--hidden", type=int, default=64)
    g.add_argument("--layers", type=int, default=2)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--kv-heads", type=int, default=0, help="default: = heads")
    g.add_argument("--vocab", type=int, default=512)
    g.add_argument("--seq-len", type=int, default=64)
    g.add_argument("--untied", action="store_true")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--init-std", type=float, default=0.02)
    g.add_argument("--norm-noise", type=float, default=0.0, help="norm weights 1 + this * N(0,1)")
    g = p.add_argument_group("fixtures")
    g.add_argument("--get", nargs=2, metavar=("FIXTURE.json", "KEY"), help="print a field (dots for nesting)")
    g.add_argument("--compare", metavar="LOG.jsonl", help="compare a fable train log with --expect")
    g.add_argument("--expect", metavar="RESULT.json")
    g.add_argument("--tol", type=float, default=1e-4)
    g.add_argument("--regen", action="store_true", help="rewrite tests/fixtures/train/*.json")
    g.add_argument("--self-check", action="store_true", help="check this training loop against "
                   "tests/fixtures/torch (needs torch)")
    g.add_argument("--data", help="shared data dir for --regen (default $FABLE_DATA or ../shared/data)")
    return p


def main(argv):
    p = parser()
    a = p.parse_args(argv)
    if a.get:
        with open(a.get[0]) as f:
            v = json.load(f)
        for k in a.get[1].split("."):
            v = v[k]
        print(v if not isinstance(v, (list, dict)) else json.dumps(v))
        return 0
    if a.compare:
        if not a.expect:
            p.error("--compare needs --expect RESULT.json")
        return compare(a.compare, a.expect, a.tol)
    if a.make_init:
        if a.like:
            with open(a.like) as f:
                fx = json.load(f)
            b = p.parse_args(fx["model"]["make_init"].split())
            cfg = make_cfg(b.dim, b.hidden, b.layers, b.heads, b.kv_heads, b.vocab, b.seq_len, b.untied)
            write_init(a.make_init, cfg, b.seed, b.init_std, b.norm_noise)
            have, want = sha256_file(a.make_init), fx["model"]["sha256"]
            if have != want and weights_sha256(a.make_init) == fx["model"]["sha256_weights"]:
                print("train_ref: note: the RoPE tables of the rebuilt init model differ in the last bit "
                      "from the fixture's (this machine's cos/sin); fable ignores them", file=sys.stderr)
            elif have != want:
                print("train_ref: the init model of %s rebuilt from its seed has sha256 %s, the fixture "
                      "was made from %s: the generator changed" % (a.like, have, want), file=sys.stderr)
                return 1
        else:
            cfg = make_cfg(a.dim, a.hidden, a.layers, a.heads, a.kv_heads, a.vocab, a.seq_len, a.untied)
            write_init(a.make_init, cfg, a.seed, a.init_std, a.norm_noise)
        if not a.quiet:
            print("%s: %s, sha256 %s" % (a.make_init, cfg, sha256_file(a.make_init)))
        return 0
    if a.self_check:
        return self_check()
    if a.regen:
        regen(a)
        return 0
    if not a.init or not a.train:
        p.error("training needs --init MODEL.bin and --train SHARD (or use --make-init, --compare, "
                "--get, --regen)")
    cfg, _ = read_model(a.init)
    r = resolve_recipe(a, cfg["seq_len"])
    res = train(a.init, a.train, r, quiet=a.quiet)
    text = json.dumps(res, indent=1) + "\n"
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
