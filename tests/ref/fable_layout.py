"""fable's parameter layout, shared by the reference scripts (standard library only)."""


def tensor_shapes(cfg):
    """fable's storage order (include/fable/model.h; llama2.c v0 order without the RoPE
    tables) and shapes."""
    D, F_, L, V = cfg["dim"], cfg["hidden_dim"], cfg["n_layers"], cfg["vocab_size"]
    KVD = cfg["n_kv_heads"] * (D // cfg["n_heads"])
    sh = [("tok_emb", (V, D)), ("rms_att", (L, D)), ("wq", (L, D, D)), ("wk", (L, KVD, D)),
          ("wv", (L, KVD, D)), ("wo", (L, D, D)), ("rms_ffn", (L, D)), ("w1", (L, F_, D)),
          ("w2", (L, D, F_)), ("w3", (L, F_, D)), ("rms_final", (D,))]
    if not cfg["tied"]:
        sh.append(("wcls", (V, D)))
    return sh
