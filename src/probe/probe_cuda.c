/* fable probe — the cuda engine's weights and dispatch probes (the GPU side and what each
 * number means: src/engine/cuda/cuda_probe.cu). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fable/util.h"
#include "probe/probe_cuda.h"

int probe_cuda_weights(const probe_opts *o, const eng_opts *eo, fable_cuda_weights *r) {
    memset(r, 0, sizeof *r);
    const int M = o->B * o->T;
    probe_wshape sh[5];   /* the shapes the cpu weights probe takes */
    const int n = probe_weight_shapes(&o->cfg, sh);
    for (int i = 0; i < n; i++) {
        fable_cuda_wrow *w = &r->r[i];
        snprintf(w->name, sizeof w->name, "%s", sh[i].name);
        w->M = M, w->N = sh[i].N, w->K = sh[i].K;
    }
    r->n = n;
    return eng_cuda_probe_weights(eo, o->quick, r);
}

int probe_cuda_dispatch(const probe_opts *o, const eng_opts *eo, fable_cuda_dispatch *r) {
    memset(r, 0, sizeof *r);
    return eng_cuda_probe_dispatch(eo, o->quick, r);
}

void probe_cuda_weights_print(probe_out *po, const fable_cuda_weights *r) {
    po_begin(po, "weights", "weights: change a layer's weights without capturing its product again (cuda graph)");
    po_str(po, "precision", "product operands", r->precision);
    static const char *keys[] = {"matrix", "M", "N", "K", "err_first", "err_inplace", "moved", "err_newaddr",
                                 "plain_us", "replay_us", "write_us", "update_us", "recapture_us"};
    static const char *heads[] = {"matrix", "M", "N", "K", "err W0", "err W1 in place", "moved", "err W2 moved",
                                  "direct us", "replay us", "write W us", "exec update us", "recapture us"};
    po_table(po, "shapes", 13, keys, heads);
    for (int i = 0; i < r->n; i++) {
        const fable_cuda_wrow *w = &r->r[i];
        po_cell_str(po, w->name);
        po_cell_num(po, w->M, "%.0f");
        po_cell_num(po, w->N, "%.0f");
        po_cell_num(po, w->K, "%.0f");
        po_cell_num(po, w->err_first, "%.1e");
        po_cell_num(po, w->err_inplace, "%.1e");
        po_cell_num(po, w->moved, "%.2f");
        po_cell_num(po, w->err_newaddr, "%.1e");
        po_cell_num(po, w->plain_us, "%.1f");
        po_cell_num(po, w->replay_us, "%.1f");
        po_cell_num(po, w->write_us, "%.1f");
        po_cell_num(po, w->update_us, "%.1f");
        po_cell_num(po, w->recapture_us, "%.1f");
    }
    po_table_end(po);
    po_note(po, "err: max |Y - X.W^T| / max |X.W^T| on sampled rows, against a double-precision product of the "
                "operands as the GPU holds them; moved: how far the replayed output moved when W changed in place");
    po_note(po, "W1 in place: new weights copied over the old (what AdamW does each update), the captured graph "
                "replayed unchanged; W2 moved: weights at a new address, the graph captured again and updated in "
                "place (cudaGraphExecUpdate; n/a: refused), against capturing and instantiating a new graph");
    int follows = 1;
    double upd = 0, rec = 0;
    for (int i = 0; i < r->n; i++) {
        follows &= r->r[i].moved > 0.1;
        upd += r->r[i].update_us, rec += r->r[i].recapture_us;
    }
    po_note(po, "%s; at a new address, updating the executable graph took %.0f us over these shapes against %.0f us "
                "for a new one",
            follows ? "the graph reads weights by address: an in-place update needs nothing else"
                    : "THE REPLAY DID NOT FOLLOW THE NEW WEIGHTS on some shape",
            upd, rec);
}

void probe_cuda_dispatch_print(probe_out *po, const fable_cuda_dispatch *r) {
    po_begin(po, "dispatch", "dispatch: the cost of starting the smallest kernel (cuda: a launch vs a graph replay)");
    po_num(po, "nkern", "empty kernels per batch", r->nkern, "%.0f", "");
    po_num(po, "launch_us", "launch, host time per kernel (back to back)", r->launch_us, "%.2f", "us");
    po_num(po, "launch_gap_us", "launch, device time per kernel in the batch", r->launch_gap_us, "%.2f", "us");
    po_num(po, "launch_sync_us", "one launch + synchronize (round trip)", r->launch_sync_us, "%.1f", "us");
    po_num(po, "capture_us", "capture + instantiate the batch as a graph (once)", r->capture_us, "%.0f", "us");
    po_num(po, "graph_launch_us", "graph launch, host time for the whole batch", r->graph_launch_us, "%.2f", "us");
    po_num(po, "graph_gap_us", "graph replay, device time per kernel node", r->graph_gap_us, "%.2f", "us");
    po_num(po, "graph_sync_us", "one-kernel graph: launch + synchronize", r->graph_sync_us, "%.1f", "us");
    if (r->graph_gap_us > 0)
        po_note(po, "per 100 kernels: %.0f us of host time launched one by one, %.1f us as one graph; on the device "
                    "%.0f us vs %.0f us",
                100 * r->launch_us, r->graph_launch_us * 100.0 / r->nkern, 100 * r->launch_gap_us,
                100 * r->graph_gap_us);
}
