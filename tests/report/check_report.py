#!/usr/bin/env python3
"""Checks a `mixtape compare --report` page against the compare.json it was built from.

usage: check_report.py PAGE.html DIR

* the page parses as HTML5 without a single parse error (html5lib, strict);
* it is self-contained: no script, no external stylesheet, image, font or link;
* each plot section holds exactly one inline SVG whose series (gnuplot's <title> per plot) are the expected ones;
* every number of the summary and autocast tables equals compare.json's (data-value) and is shown rounded from it;
* the verdict lines carry the ratios and differences computed here from compare.json;
* the loss-scale caption counts the skipped steps.
Prints what it checked; exits 1 with the reasons otherwise.
"""
import json
import math
import os
import re
import sys

import html5lib

NS = "{http://www.w3.org/1999/xhtml}"
SVG = "{http://www.w3.org/2000/svg}"
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def text_of(el):
    return "".join(el.itertext())


def main():
    page_path, run_dir = sys.argv[1], sys.argv[2]
    raw = open(page_path, "rb").read()
    record = json.load(open(os.path.join(run_dir, "compare.json")))
    runs = record["runs"]
    results = {r["precision"]: r["result"] for r in runs}
    precisions = [r["precision"] for r in runs]
    baseline = precisions[0]
    text_model = results[baseline].get("context", 0) > 0

    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=True)
    try:
        doc = parser.parse(raw)
    except html5lib.html5parser.ParseError as e:
        print(f"check_report: {page_path} is not valid HTML5: {e}")
        return 1

    # self-contained
    check(doc.find(f".//{NS}script") is None and b"<script" not in raw.lower(), "the page holds a script")
    check(doc.find(f".//{NS}link") is None, "the page links a resource")
    for el in doc.iter():
        for attr in ("src", "href", "{http://www.w3.org/1999/xlink}href", "data"):
            v = el.get(attr)
            if v is not None and attr != "data":
                check(v.startswith("#"), f"<{el.tag}> {attr}={v!r} points outside the page")
    style = "".join(text_of(s) for s in doc.iter(f"{NS}style"))
    check("url(" not in style and "@import" not in style and "@font-face" not in style, "the stylesheet loads something")

    sections = {s.get("id"): s for s in doc.iter(f"{NS}section")}
    scaled = [p for p in precisions if results[p].get("loss_scaling")]
    expected = {
        "loss": precisions,
        "accuracy": precisions,
        "throughput": ["samples/s"],
        "peak-memory": ["peak memory"],
        "activation-memory": ["activation memory"],
    }
    if len(precisions) > 1:
        expected["loss-difference"] = [f"{p} \u2212 {baseline}" for p in precisions[1:]]
    if scaled:
        series = []
        for p in precisions:
            if p in scaled:
                series.append(p)
                n = results[p]["skipped_steps"]
                if n:
                    series.append(f"{p} skipped steps ({n})")
        expected["loss-scale"] = series
    for sid in ["verdict", "config", "summary", "loss", "accuracy", "loss-scale", "throughput", "peak-memory",
                "activation-memory", "amp"] + (["loss-difference"] if len(precisions) > 1 else []):
        check(sid in sections, f"no section '{sid}'")
    ids = [el.get("id") for el in doc.iter() if el.get("id")]
    dupes = {i for i in ids if ids.count(i) > 1}
    check(not dupes, f"ids used twice: {sorted(dupes)[:5]}")
    for sid, section in sections.items():
        svgs = section.findall(f".//{SVG}svg")
        if sid in expected:
            if not check(len(svgs) == 1, f"section '{sid}' holds {len(svgs)} plots, not 1"):
                continue
            titles = []
            for g in svgs[0].iter(f"{SVG}g"):
                if re.fullmatch(rf"{re.escape(sid)}-gnuplot_plot_\d+", g.get("id") or ""):
                    t = g.find(f"{SVG}title")
                    if t is not None and not re.fullmatch(r"gnuplot_plot_\d+", t.text or ""):  # untitled: its id
                        titles.append(t.text)
            check(titles == expected[sid], f"section '{sid}' plots {titles}, expected {expected[sid]}")
        else:
            check(not svgs, f"section '{sid}' holds a plot it should not")
    if not scaled and "loss-scale" in sections:
        check("No run scaled its loss" in text_of(sections["loss-scale"]), "the loss-scale section does not say why it is empty")

    # the summary's numbers
    units = {"samples_per_s": (1, 0), "peak_mem_bytes": (1 / 2**20, 1), "activation_bytes": (1 / 2**20, 1),
             "final_loss": (1, 4), "val_bpc": (1, 4), "test_acc": (100, 2), "skipped_steps": (1, 0)}
    checked = 0
    rows = {tr.get("data-precision"): tr for tr in sections["summary"].iter(f"{NS}tr") if tr.get("data-precision")}
    check(list(rows) == precisions, f"the summary's rows are {list(rows)}, expected {precisions}")
    keys_expected = set(units) | {"loss_scale"}
    if not text_model:
        keys_expected.discard("val_bpc")
    for p, tr in rows.items():
        cells = {td.get("data-key"): td for td in tr.iter(f"{NS}td") if td.get("data-key")}
        check(set(cells) == keys_expected, f"{p}: the summary shows {sorted(cells)}, expected {sorted(keys_expected)}")
        for key, td in cells.items():
            value = results[p].get(key)
            check(json.loads(td.get("data-value")) == value, f"{p} {key}: data-value {td.get('data-value')} != {value!r}")
            checked += 1
            if key in units and value is not None:
                scale, digits = units[key]
                shown = float(text_of(td).rstrip("%"))
                check(abs(shown - value * scale) <= 0.5 * 10 ** -digits + 1e-9,
                      f"{p} {key}: shows {text_of(td)} for {value}")
            if key == "loss_scale":
                shown = text_of(td)
                if results[p].get("loss_scaling"):
                    check(float(shown) == value, f"{p} loss scale shows {shown} for {value}")
                else:
                    check(shown == "none", f"{p} has no scaler but its loss scale shows {shown}")

    # the verdicts, recomputed here
    base = results[baseline]
    verdicts = {li.get("data-precision"): text_of(li) for li in sections["verdict"].iter(f"{NS}li")}
    check(list(verdicts) == precisions[1:], f"verdicts for {list(verdicts)}, expected {precisions[1:]}")
    for p, line in verdicts.items():
        r = results[p]
        speed = r["samples_per_s"] / base["samples_per_s"]
        check(f"{speed:.2f}\u00d7 " + ("faster" if speed >= 1 else "the speed (slower)") in line, f"{p} verdict lacks speed {speed:.2f}: {line}")
        act = r["activation_bytes"] / base["activation_bytes"]
        check(f"{act:.2f}\u00d7 activation memory" in line, f"{p} verdict lacks activation ratio {act:.2f}: {line}")
        peak = r["peak_mem_bytes"] / base["peak_mem_bytes"]
        check(f"{peak:.2f}\u00d7 peak memory" in line, f"{p} verdict lacks peak ratio {peak:.2f}: {line}")
        if text_model:
            diff, unit, digits = r["val_bpc"] - base["val_bpc"], " bits/char", 3
        else:
            diff, unit, digits = 100 * (r["test_acc"] - base["test_acc"]), " pt", 2
        shown = f"{abs(diff):.{digits}f}"
        sign = "+" if float(shown) == 0 or diff > 0 else "\u2212"
        check(sign + shown + unit in line, f"{p} verdict lacks the difference {sign}{shown}{unit}: {line}")
        n = r["skipped_steps"]
        check(("no skipped steps" in line) if n == 0 else (f"{n} skipped step" in line), f"{p} verdict misstates skips: {line}")

    # the autocast tables
    tables = {t.get("data-precision"): t for t in sections["amp"].iter(f"{NS}table")}
    for p in precisions:
        ops = results[p].get("amp_ops", [])
        if p == "fp32" or not ops:
            check(p not in tables, f"an autocast table for {p}, which ran no op under autocast")
            continue
        if not check(p in tables, f"no autocast table for {p}"):
            continue
        body = [tr for tr in tables[p].iter(f"{NS}tr") if tr.find(f"{NS}td") is not None]
        check(len(body) == len(ops), f"{p}: {len(body)} autocast rows for {len(ops)} ops")
        for tr, op in zip(body, ops):
            check(text_of(tr.find(f"{NS}th")) == op["op"], f"{p}: row {text_of(tr.find(f'{NS}th'))} for op {op['op']}")
            for td in tr.iter(f"{NS}td"):
                key = td.get("data-key")
                if key:
                    check(json.loads(td.get("data-value")) == op[key] and int(text_of(td)) == op[key],
                          f"{p} {op['op']} {key}: {text_of(td)} != {op[key]}")
                    checked += 1

    if scaled:
        caption = text_of(sections["loss-scale"])
        for p in scaled:
            check(f"{p}: {results[p]['skipped_steps']} skipped step(s) of {results[p]['steps']}" in caption,
                  f"the loss-scale caption does not count {p}'s skipped steps")

    if failures:
        print(f"check_report: {page_path}: {len(failures)} problem(s):")
        for f in failures:
            print("  " + f)
        return 1
    print(f"check_report: {page_path}: valid HTML5, self-contained, {len(expected)} plots with their series, "
          f"{checked} numbers equal to compare.json, {len(verdicts)} verdict(s) recomputed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
