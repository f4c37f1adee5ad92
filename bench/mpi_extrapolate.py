#!/usr/bin/env python3
"""On paper: stories110M data-parallel over N machines and a network link, from measured numbers.

Model of one update (fable's reduction, not overlapped with the backward pass):
  t_update(N) = K * t_micro                           compute: K micro-steps of 1x256 per machine
              + 2 (N-1)/N * 4 n / (link * eff)        bytes each rank sends = receives (bandwidth)
              + 2 (N-1) * buckets * alpha             all-to-all + all-gather, one message per peer per bucket
              + t_local                               engine<->host copies and the slice sums (measured)
Efficiency = K t_micro / t_update. "Overlap" assumes the transfer hides behind the backward pass
of the update's last micro-step (2/3 of one micro-step: the gradients are final only then) and
only the excess shows.

  python3 bench/mpi_extrapolate.py [t_micro_s] [t_local_s]
"""
import math
import sys

n = 109_529_856                      # stories110M parameters (SPEC §2)
grad_bytes = 4 * n                   # fp32 gradients
bucket = 16 << 20                    # DIST_BUCKET_FLOATS * 4
buckets = math.ceil(grad_bytes / bucket)
t_micro = float(sys.argv[1]) if len(sys.argv) > 1 else 0.532   # s per 1x256 micro-step, 2 threads (SPEC §9)
t_local = float(sys.argv[2]) if len(sys.argv) > 2 else 0.08    # s per update, copies + sums (measured: RESULTS 2026-12-05)
alpha = 30e-6                        # s per message over TCP/Ethernet (typical; RDMA ~2-5 us)
eff = 0.9                            # achievable fraction of the line rate
links = {"10 Gb/s": 10e9 / 8, "25 Gb/s": 25e9 / 8, "100 Gb/s": 100e9 / 8}
Ns = [2, 4, 8, 16, 32, 64]


def t_comm(N, Bps):
    return 2 * (N - 1) / N * grad_bytes / (Bps * eff) + 2 * (N - 1) * buckets * alpha


print(f"stories110M: {n:,} parameters, {grad_bytes / 1e6:.0f} MB of gradients, {buckets} buckets of 16 MB;"
      f" t_micro {t_micro:.3f} s, t_local {t_local:.3f} s, alpha {alpha * 1e6:.0f} us, {eff:.0%} of line rate\n")

print("Weak scaling (K micro-steps of 1x256 per machine per update): efficiency, no overlap / overlap")
print("| link | K | " + " | ".join(f"N={N}" for N in Ns) + " |")
print("|---|---|" + "---|" * len(Ns))
for name, Bps in links.items():
    for K in (1, 10):
        comp = K * t_micro
        cells = []
        for N in Ns:
            c = t_comm(N, Bps)
            e0 = comp / (comp + c + t_local)
            e1 = comp / (comp + max(0.0, c - 2 / 3 * t_micro) + t_local)
            cells.append(f"{e0:.0%} / {e1:.0%}")
        print(f"| {name} | {K} | " + " | ".join(cells) + " |")

print("\nMB each rank sends per update: " + ", ".join(f"N={N}: {2 * (N - 1) / N * grad_bytes / 1e6:.0f}" for N in Ns))
print("Transfer seconds per update (bandwidth + latency terms):")
for name, Bps in links.items():
    print(f"  {name}: " + ", ".join(f"N={N}: {t_comm(N, Bps):.3f}" for N in Ns))

for G in (10, 128):  # the reference's update (accum 10 of 1x256); llama2.c's 32 x 4
    print(f"\nStrong scaling: global batch {G} x 256 per update fixed, ceil({G}/N) micro-steps per machine;"
          " speedup over one machine, no overlap")
    Nsg = [N for N in Ns if N <= G] + ([G] if G not in Ns else [])
    print("| link | " + " | ".join(f"N={N}" for N in Nsg) + " | best N (more machines: no faster) |")
    print("|---|" + "---|" * len(Nsg) + "---|")
    for name, Bps in links.items():
        base = G * t_micro
        sp = {}
        for N in range(1, G + 1):
            sp[N] = base / (math.ceil(G / N) * t_micro + (t_comm(N, Bps) + t_local if N > 1 else 0.0))
        best = max(sp, key=sp.get)
        print(f"| {name} | " + " | ".join(f"{sp[N]:.1f}x" for N in Nsg) + f" | N = {best}: {sp[best]:.1f}x |")
