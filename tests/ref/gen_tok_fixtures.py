#!/usr/bin/python3
"""Write the tokenizer parity fixtures (tests/fixtures/tok/*) with the sentencepiece library.

Run from the repository root with Debian's python3 (it has python3-sentencepiece):

    /usr/bin/python3 tests/ref/gen_tok_fixtures.py            # corpora + hard cases
    /usr/bin/python3 tests/ref/gen_tok_fixtures.py --trained  # also the trained-model fixture
                                                               # (needs ./fable built)
    /usr/bin/python3 tests/ref/gen_tok_fixtures.py --check-train [--vocab N] [--input F]...
        # no fixtures: train with ./fable, load its .model with sentencepiece, require
        # identical ids from sentencepiece and `fable encode` (.model and .bin) on every
        # line of the five TinyStories files, and print tokens/story against tok512

Every expected id in the fixtures comes from sentencepiece (SentencePieceProcessor.encode on
the raw UTF-8 bytes), never from fable. tests/data/test_tokenizer.c reads them together with
the texts in ../shared/data (or $FABLE_DATA) and requires fable to give identical ids.

Story split (the C test does the same):
  *.txt   the file's bytes split on "<|endoftext|>"; every piece that is not only ASCII
          whitespace is a story, kept byte for byte (leading/trailing newlines included);
  *.json  the strings of a JSON array, of its objects' "story"/"text" fields, or of
          {"texts": [...]}, UTF-8 encoded.

Corpus fixture tests/fixtures/tok/<vocab>.<file stem>.txt:
  header lines "key value" (model, data, stories, tokens, full), then one line per story
  "<number of ids> <FNV-1a 32-bit of the ids>" (the ids hashed as 4-byte little-endian
  integers), then the complete ids of the first `full` stories, one story per line. Hashing
  every story keeps the fixtures small (~13 bytes a story) while every story is compared.

Hard cases: tests/fixtures/tok/hard_cases.txt is written by hand: one case per line, with
backslash escapes \\n \\t \\r \\\\ and \\xHH (any byte, invalid UTF-8 included); '#' starts a
comment line; an empty line is the empty-string case. Expected ids:
hard_cases.<vocab>.ids, one line per case (same order), for both vocabularies, plus
hard_cases.<vocab>.bos_eos.ids with BOS and EOS added.
"""
import hashlib
import json
import os
import struct
import subprocess
import sys

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.environ.get("FABLE_DATA") or os.path.join(os.path.dirname(ROOT), "shared", "data")
OUT = os.path.join(ROOT, "tests", "fixtures", "tok")

VOCABS = [("llama2", "tokenizer/tokenizer.model"), ("tok512", "stories260K/tok512.model")]
FILES = [
    "tinystories/tinystories_v1_train_first1000.json",
    "tinystories/tinystories_v1_valid_first1000.txt",
    "tinystories/tinystories_v2_train_first10000lines.txt",
    "tinystories/tinystories_subset3000.json",
    "tinystories/tinystories_v2_sample_cs336.txt",
]
FULL = 3  # stories per file whose complete ids are stored


def fnv1a32(ids):
    h = 0x811C9DC5
    for b in struct.pack("<%dI" % len(ids), *ids):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def stories(path):
    raw = open(path, "rb").read()
    if path.endswith(".json"):
        doc = json.loads(raw.decode("utf-8"))
        if isinstance(doc, dict):
            doc = doc["texts"]
        out = []
        for x in doc:
            if isinstance(x, dict):
                x = x["story"] if "story" in x else x["text"]
            out.append(x.encode("utf-8"))
        return out
    return [p for p in raw.split(b"<|endoftext|>") if p.strip(b" \t\n\r\x0b\x0c")]


def unescape(line):
    out = bytearray()
    i = 0
    while i < len(line):
        c = line[i]
        if c == 0x5C and i + 1 < len(line):  # backslash
            e = chr(line[i + 1])
            if e == "x":
                out.append(int(line[i + 2:i + 4], 16))
                i += 4
                continue
            out += {"n": b"\n", "t": b"\t", "r": b"\r", "\\": b"\\"}[e]
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def hard_cases():
    cases = []
    for line in open(os.path.join(OUT, "hard_cases.txt"), "rb").read().split(b"\n")[:-1]:
        if line.startswith(b"#"):
            continue
        cases.append(unescape(line))
    return cases


def ids_line(ids):
    return " ".join(map(str, ids)) + "\n"


def write_corpus(vocab, sp, model_rel):
    for rel in FILES:
        st = stories(os.path.join(DATA, rel))
        enc = [sp.encode(s) for s in st]
        stem = os.path.splitext(os.path.basename(rel))[0]
        path = os.path.join(OUT, "%s.%s.txt" % (vocab, stem))
        with open(path, "w") as f:
            f.write("# tokenizer parity fixture: written by tests/ref/gen_tok_fixtures.py with "
                    "sentencepiece %s; do not edit\n" % spm.__version__)
            f.write("model %s\ndata %s\nstories %d\ntokens %d\nfull %d\n"
                    % (model_rel, rel, len(st), sum(map(len, enc)), FULL))
            for ids in enc:
                f.write("%d %08x\n" % (len(ids), fnv1a32(ids)))
            for ids in enc[:FULL]:
                f.write(ids_line(ids))
        print("%-8s %-48s %5d stories %8d tokens" % (vocab, rel, len(st), sum(map(len, enc))))


def write_hard(vocab, sp, cases):
    with open(os.path.join(OUT, "hard_cases.%s.ids" % vocab), "w") as f:
        for c in cases:
            f.write(ids_line(sp.encode(c)))
    with open(os.path.join(OUT, "hard_cases.%s.bos_eos.ids" % vocab), "w") as f:
        for c in cases:
            f.write(ids_line(sp.encode(c, add_bos=True, add_eos=True)))


# Extra models: other normalizer/trainer settings, trained here with sentencepiece (so the
# models themselves are reference files), to exercise code paths that the Llama-2 and tok512
# vocabularies do not: a precompiled charsmap (custom normalization rules) with
# remove_extra_whitespaces and user-defined symbols; no byte fallback (unknown characters →
# <unk>) without a dummy prefix; whitespace as a suffix; and UNUSED pieces (tok512 with a few
# pieces re-typed UNUSED, which the encoder must split back).
EXTRA_RULES = "\n".join(["%X\t%X" % (c, c + 32) for c in range(0x41, 0x5B)] +  # A-Z → a-z
                         ["FB01\t66 69", "3000\t20", "9\t20", "2E 2E 2E\t2026", "C9\t45 301"]) + "\n"


def pb_varint(b, i):
    r = s = 0
    while True:
        c = b[i]; i += 1; r |= (c & 0x7F) << s; s += 7
        if c < 0x80:
            return r, i


def pb_put_varint(v):
    out = bytearray()
    while True:
        c = v & 0x7F; v >>= 7
        out.append(c | (0x80 if v else 0))
        if not v:
            return bytes(out)


def mark_unused(model, pieces):
    """Re-type the named pieces of a serialized ModelProto as UNUSED (type 5)."""
    out, i = bytearray(), 0
    while i < len(model):
        start = i
        key, i = pb_varint(model, i)
        n, i = pb_varint(model, i)  # every top-level field is length-delimited
        body = model[i:i + n]; i += n
        if key == 0x0A:
            j, name = 0, None
            while j < len(body):
                k2, j = pb_varint(body, j)
                if k2 & 7 == 2:
                    l2, j = pb_varint(body, j); v = body[j:j + l2]; j += l2
                    if k2 >> 3 == 1:
                        name = v
                elif k2 & 7 == 5:
                    j += 4
                else:
                    _, j = pb_varint(body, j)
            if name in pieces:
                body = body + b"\x18\x05"  # field 3 (type), varint 5; the last value wins
                out += b"\x0A" + pb_put_varint(len(body)) + body
                continue
        out += model[start:i]
    return bytes(out)


def fixed_tmp():
    """A fixed scratch directory: sentencepiece stores its input and output paths in the
    model, so fixed paths keep regenerated models byte-identical."""
    import tempfile
    d = os.path.join(tempfile.gettempdir(), "fable_tok_fixtures")
    os.makedirs(d, exist_ok=True)
    return d


def write_extra(cases):
    tmp = fixed_tmp()
    text = os.path.join(tmp, "train.txt")
    with open(text, "wb") as f:
        for st in stories(os.path.join(DATA, "tinystories/tinystories_v1_valid_first1000.txt"))[:300]:
            f.write(st.strip() + b"\n")
        f.write(b"ALL CAPS TEXT\tWITH TABS...  and   spaces \xef\xac\x81ne \xc3\x89t\xc3\xa9\n" * 20)
        f.write(b"<|user|> hello <sep> world 123 4567 89\n" * 20)
    rules = os.path.join(tmp, "rules.tsv")
    open(rules, "w").write(EXTRA_RULES)
    common = dict(input=text, model_type="bpe", vocab_size=420, character_coverage=1.0,
                  hard_vocab_limit=False, num_threads=1, minloglevel=2)
    spm.SentencePieceTrainer.train(model_prefix=os.path.join(tmp, "norm"), normalization_rule_tsv=rules,
                                   remove_extra_whitespaces=True, byte_fallback=True,
                                   user_defined_symbols=["<|user|>", "xyz"], **common)
    spm.SentencePieceTrainer.train(model_prefix=os.path.join(tmp, "nofallback"), normalization_rule_name="identity",
                                   byte_fallback=False, add_dummy_prefix=False, remove_extra_whitespaces=False,
                                   split_digits=False, user_defined_symbols=["<sep>"], **common)
    spm.SentencePieceTrainer.train(model_prefix=os.path.join(tmp, "suffix"), normalization_rule_name="identity",
                                   byte_fallback=True, treat_whitespace_as_suffix=True,
                                   remove_extra_whitespaces=False, **common)
    models = {n: open(os.path.join(tmp, n + ".model"), "rb").read() for n in ("norm", "nofallback", "suffix")}
    tok512 = open(os.path.join(DATA, "stories260K/tok512.model"), "rb").read()
    models["unused"] = mark_unused(tok512, {"\u2581the".encode(), b"he", b"nd", "\u2581and".encode(),
                                            b"ing", "\u2581".encode() + b"Lily"})
    texts = cases + stories(os.path.join(DATA, "tinystories/tinystories_v2_sample_cs336.txt"))
    for name, blob in models.items():
        path = os.path.join(OUT, "extra_%s.model" % name)
        open(path, "wb").write(blob)
        sp = spm.SentencePieceProcessor(model_file=path)
        with open(os.path.join(OUT, "extra_%s.ids" % name), "w") as f:
            for t in texts:
                f.write(ids_line(sp.encode(t)))
        print("extra model %-10s %6d bytes, %d pieces" % (name, len(blob), sp.get_piece_size()))


def write_spm_trained():
    """sentencepiece's own BPE trainer with llama2.c's tok512 recipe (tinystories.py
    train_vocab) on the stories of tinystories_v1_train_first1000.json, each stripped and
    written on one line as train_vocab does. test_tokenizer_train.c trains fable on the same
    stories and requires the same 512 pieces in the same order."""
    tmp = fixed_tmp()
    txt = os.path.join(tmp, "tiny.txt")
    st = [s.strip() for s in json.load(open(os.path.join(DATA, "tinystories/tinystories_v1_train_first1000.json"),
                                            encoding="utf-8"))]
    open(txt, "w", encoding="utf-8").write("".join(s + "\n" for s in st))
    spm.SentencePieceTrainer.train(input=txt, model_prefix=os.path.join(tmp, "spm512"), model_type="bpe",
                                   vocab_size=512, self_test_sample_size=0, input_format="text",
                                   character_coverage=1.0, num_threads=1, split_digits=True,
                                   allow_whitespace_only_pieces=True, byte_fallback=True,
                                   unk_surface=r" \342\201\207 ", normalization_rule_name="identity",
                                   minloglevel=2)
    blob = open(os.path.join(tmp, "spm512.model"), "rb").read()
    open(os.path.join(OUT, "spm_trained512.model"), "wb").write(blob)
    print("spm_trained512.model: %d bytes" % len(blob))


def write_trained():
    """Train a 512 vocabulary with fable on a fixed input, then record what sentencepiece
    makes of fable's .model: its ids for the hard cases and the cs336 stories. The C test
    retrains (fable's trainer is deterministic) and compares."""
    tmp = os.path.join(OUT, "..", "..", "..", "build", "tok_fixture")
    os.makedirs(tmp, exist_ok=True)
    prefix = os.path.join(tmp, "trained512")
    inp = os.path.join(DATA, "tinystories/tinystories_v1_valid_first1000.txt")
    subprocess.check_call([os.path.join(ROOT, "fable"), "tokenizer", "train", "--vocab", "512",
                           "--input", inp, "--out", prefix])
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    model = open(prefix + ".model", "rb").read()
    with open(os.path.join(OUT, "trained512.ids"), "w") as f:
        f.write("# sentencepiece %s on fable's `tokenizer train --vocab 512 --input "
                "tinystories/tinystories_v1_valid_first1000.txt`; model sha256 %s\n"
                % (spm.__version__, hashlib.sha256(model).hexdigest()))
        for c in hard_cases():
            f.write(ids_line(sp.encode(c)))
        for s in stories(os.path.join(DATA, "tinystories/tinystories_v2_sample_cs336.txt")):
            f.write(ids_line(sp.encode(s)))
    print("trained512: model sha256", hashlib.sha256(model).hexdigest())


def check_train(args):
    """Script-based check of `fable tokenizer train` (see the module docstring)."""
    import tempfile
    vocab, inputs = 512, []
    i = 0
    while i < len(args):
        if args[i] == "--vocab":
            vocab = int(args[i + 1]); i += 2
        elif args[i] == "--input":
            inputs.append(args[i + 1]); i += 2
        else:
            i += 1
    if not inputs:
        inputs = [os.path.join(DATA, "tinystories/tinystories_v1_train_first1000.json"),
                  os.path.join(DATA, "tinystories/tinystories_v2_train_first10000lines.txt")]
    tmp = tempfile.mkdtemp()
    prefix = os.path.join(tmp, "trained")
    subprocess.check_call([os.path.join(ROOT, "fable"), "tokenizer", "train", "--vocab", str(vocab),
                           "--out", prefix] + sum([["--input", f] for f in inputs], []))
    ours = spm.SentencePieceProcessor(model_file=prefix + ".model")
    ref = spm.SentencePieceProcessor(model_file=os.path.join(DATA, "stories260K/tok512.model"))
    print("trained on:", ", ".join(os.path.basename(f) for f in inputs))
    print("%-44s %8s %10s %10s %7s" % ("file (stories stripped)", "stories", "tok512", "trained", "ratio"))
    lines = []
    for rel in FILES:
        st = [s.strip() for s in stories(os.path.join(DATA, rel))]
        st = [s for s in st if s]
        a = sum(len(ref.encode(s)) for s in st)
        b = sum(len(ours.encode(s)) for s in st)
        print("%-44s %8d %10.1f %10.1f %7.3f" % (os.path.basename(rel), len(st), a / len(st), b / len(st), b / a))
        for s in st:
            lines += s.split(b"\n")
    txt = os.path.join(tmp, "lines.txt")
    open(txt, "wb").write(b"\n".join(lines) + b"\n")
    want = "".join(" ".join(map(str, ours.encode(l))) + "\n" for l in lines)
    for ext in (".model", ".bin"):
        got = subprocess.check_output([os.path.join(ROOT, "fable"), "encode", "--tokenizer", prefix + ext,
                                       "--input", txt]).decode()
        same = sum(x == y for x, y in zip(got.split("\n"), want.split("\n")))
        print("fable encode %s vs sentencepiece on the trained model: %d of %d lines identical"
              % (ext, same - 1, len(lines)))
        if got != want:
            sys.exit("MISMATCH")


def main():
    if "--check-train" in sys.argv[1:]:
        check_train(sys.argv[1:])
        return
    os.makedirs(OUT, exist_ok=True)
    cases = hard_cases()
    for vocab, rel in VOCABS:
        sp = spm.SentencePieceProcessor(model_file=os.path.join(DATA, rel))
        write_corpus(vocab, sp, rel)
        write_hard(vocab, sp, cases)
    print("hard cases:", len(cases))
    write_extra(cases)
    write_spm_trained()
    if "--trained" in sys.argv[1:]:
        write_trained()


if __name__ == "__main__":
    main()
