#!/usr/bin/env python3
"""Turn a `fable train --log` JSON-lines file into an SVG loss curve (train loss per update,
validation loss at each eval). Standard library only.
usage: python3 docs/plot_log.py LOG.jsonl OUT.svg [TITLE]"""
import json, sys

def main():
    log, out = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else log
    train, val = [], []
    for line in open(log):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("type") == "batch" and r.get("loss") is not None:
            train.append((r["batch"], r["loss"]))
        elif r.get("type") == "eval" and r.get("val_loss") is not None:
            val.append((r["step"], r["val_loss"]))
    if not train:
        raise SystemExit("no batch records in " + log)
    W, H, L, R, T, B = 720, 400, 60, 20, 40, 50
    xmax = max(x for x, _ in train)
    ys = [y for _, y in train] + [y for _, y in val]
    ymin, ymax = min(ys), max(ys)
    ymin = max(0.0, ymin - 0.1)
    def px(x): return L + (W - L - R) * x / max(xmax, 1)
    def py(y): return T + (H - T - B) * (1 - (y - ymin) / max(ymax - ymin, 1e-9))
    # thin the training curve to at most ~1000 points (mean per bucket)
    step = max(1, len(train) // 1000)
    pts = []
    for i in range(0, len(train), step):
        chunk = train[i:i + step]
        pts.append((chunk[-1][0], sum(y for _, y in chunk) / len(chunk)))
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W/2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    for k in range(6):
        y = ymin + (ymax - ymin) * k / 5
        s.append(f'<line x1="{L}" x2="{W-R}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
        s.append(f'<text x="{L-6}" y="{py(y)+4:.1f}" text-anchor="end">{y:.2f}</text>')
    for k in range(6):
        x = xmax * k / 5
        s.append(f'<text x="{px(x):.1f}" y="{H-B+18}" text-anchor="middle">{int(x)}</text>')
    s.append(f'<text x="{W/2}" y="{H-10}" text-anchor="middle">update</text>')
    s.append('<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="' +
             " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts) + '"/>')
    if val:
        s.append('<polyline fill="none" stroke="#d62728" stroke-width="2" points="' +
                 " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in val) + '"/>')
        for x, y in val:
            s.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="#d62728"/>')
    s.append(f'<text x="{W-R-150}" y="{T+15}" fill="#1f77b4">train loss</text>')
    s.append(f'<text x="{W-R-150}" y="{T+32}" fill="#d62728">validation loss</text>')
    s.append("</svg>")
    open(out, "w").write("\n".join(s) + "\n")

main()
