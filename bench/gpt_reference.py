#!/usr/bin/env python3
"""PyTorch's run of `mixtape train --model gpt`: the same model, data, sampling, optimizer, steps and evaluation.

The model is nn/transformer.h's GPT: token and learned position embeddings (N(0, 0.02^2)), `depth` pre-norm blocks
(LayerNorm, causal multi-head self-attention through one qkv projection and an output projection, LayerNorm,
Linear(d, 4d)-GELU(exact)-Linear(4d, d)), a final LayerNorm and an untied head without bias; Linear layers keep
PyTorch's default initialisation (mixtape's nn::Linear is the same). The data are the default corpus of data/text.h
(the quotations of Debian's fortunes package: the same files in the same order, "%" separator lines and backspaced
characters removed) or --data FILE; the last 10% validates. Training draws `batch` windows of `context` characters
at uniform random starts each step (the same distribution as mixtape, not the same draws: the generators differ),
with Adam (lr 1e-3) on the mean cross-entropy per character; after each epoch of `steps` steps the validation loss
is measured over consecutive windows of the first `test_limit` validation characters, exactly as mixtape does.
The seed sets PyTorch's generator: the two frameworks start from different random weights, so the comparison is
of the bits per character reached, not of the bits of the weights.

Prints one line per epoch on stderr and, last on stdout, one JSON object (val_loss, val_bpc, samples_per_s, ...).
Usage: /usr/bin/python3 bench/gpt_reference.py --threads 2 [--precision bf16] [--data FILE]
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

FORTUNES = "/usr/share/games/fortunes"
FILES = ["literature", "wisdom", "fortunes", "humorists", "people", "platitudes", "science", "songs-poems", "love",
         "politics", "education", "work", "pets", "food", "men-women", "miscellaneous"]


def default_text():
    out = []
    for name in FILES:
        with open(os.path.join(FORTUNES, name), encoding="utf-8") as f:
            part = f.read()
        lines = []
        for line in part.split("\n"):
            chars = []
            for ch in line:  # a backspace removes the character before it (overstriking)
                if ch == "\b":
                    if chars:
                        chars.pop()
                else:
                    chars.append(ch)
            lines.append("".join(chars))
        # as data/text.cpp: each line but the last keeps its newline; "%" lines go with theirs
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            if line == "%":
                continue
            out.append(line)
            if not last:
                out.append("\n")
    return "".join(out)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.heads = heads

    def attn(self, x):
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(x).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q = q * (1.0 / math.sqrt(d // h))  # scaled before the product, as mixtape
        logits = q @ k.transpose(-1, -2)
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), 1)
        p = torch.softmax(logits.masked_fill(mask, float("-inf")), dim=-1)
        return self.proj((p @ v).transpose(1, 2).reshape(b, t, d))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, context, d, depth, heads):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(context, d)
        nn.init.normal_(self.tok.weight, 0.0, 0.02)
        nn.init.normal_(self.pos.weight, 0.0, 0.02)
        self.blocks = nn.ModuleList([Block(d, heads) for _ in range(depth)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.ln(h))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="", help="a UTF-8 text file (default: the fortunes corpus)")
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=250, help="steps per epoch")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--test-limit", type=int, default=32768, help="validation characters evaluated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: CPU autocast")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    text = open(a.data, encoding="utf-8").read() if a.data else default_text()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    n_val = int(math.floor(len(ids) * 0.1))
    train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val:]
    if a.test_limit and a.test_limit < len(val):
        val = val[: a.test_limit]

    model = GPT(len(chars), a.context, a.width, a.depth, a.heads)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    autocast = a.precision == "bf16"
    train_seconds, samples = 0.0, 0
    result = {}
    for epoch in range(a.epochs):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            starts = torch.randint(0, len(train) - a.context, (a.batch,))
            x = torch.stack([train[s: s + a.context] for s in starts.tolist()])
            y = torch.stack([train[s + 1: s + 1 + a.context] for s in starts.tolist()])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = F.cross_entropy(model(x).reshape(-1, len(chars)).float(), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            samples += a.batch
        train_seconds += time.perf_counter() - t0
        # validation: consecutive windows, each position predicting the next character
        model.eval()
        with torch.no_grad():
            windows = (len(val) - 1) // a.context
            total, hits = 0.0, 0
            for first in range(0, windows, 64):
                rows = min(64, windows - first)
                seg = val[first * a.context: (first + rows) * a.context + 1]
                x = seg[:-1].reshape(rows, a.context)
                y = seg[1:].reshape(-1)
                logits = model(x).reshape(-1, len(chars))
                total += F.cross_entropy(logits, y, reduction="sum").item()
                hits += (logits.argmax(-1) == y).sum().item()
            count = windows * a.context
        model.train()
        val_loss = total / count
        result = {"framework": "pytorch " + torch.__version__, "precision": a.precision, "epochs": epoch + 1,
                  "steps": (epoch + 1) * a.steps, "val_loss": val_loss, "val_bpc": val_loss / math.log(2),
                  "char_acc": hits / count, "final_loss": loss.item(), "samples_per_s": samples / train_seconds,
                  "chars_per_s": samples * a.context / train_seconds, "threads": torch.get_num_threads(),
                  "vocab": len(chars), "characters": len(ids)}
        print(f"epoch {epoch + 1}/{a.epochs}: validation loss {val_loss:.4f} ({result['val_bpc']:.3f} bits/char), "
              f"next-char accuracy {100 * hits / count:.2f}%, {result['chars_per_s']:.0f} chars/s", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
