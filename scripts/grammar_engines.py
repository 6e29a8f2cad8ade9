#!/usr/bin/env python3
"""Check the grammars `mergec grammar` derives with the engines' own Python libraries.

    python scripts/grammar_engines.py --lark FILE --gbnf FILE --corpus FILE.jsonl [--lark-sample N]

Run with the `grammar` venv (python3 scripts/venv.py grammar). The corpus has one JSON object a
line: {"text": ..., "pest": true|false} (whether pest's grammar accepts the text). Checks:
  - the Lark form loads in Python's `lark` (Earley, dynamic lexer: llguidance's equivalent) and,
    on the first N texts (Earley in Python is slow), accepts or rejects each;
  - the GBNF form, read by llguidance's GBNF reader (`grammar_from("gbnf", ...)`, which converts
    llama.cpp's syntax), over a byte vocabulary, on every text.
Prints one JSON object: per engine, how many texts pest accepts that the engine accepts and
rejects, and the same for the texts pest rejects, with up to 5 examples of each disagreement.
Exit status 0 when both grammars loaded (the caller judges the counts), 1 otherwise.
"""

import argparse
import json
import sys


class ByteTokenizer:
    """Every byte a token; token 256 ends the text."""

    def __init__(self):
        self.tokens = [bytes([b]) for b in range(256)] + [b"<eos>"]
        self.eos_token_id = 256
        self.bos_token_id = None
        self.special_token_ids = [256]

    def __call__(self, s):
        if isinstance(s, str):
            s = s.encode("utf-8")
        return list(s)


def tally():
    return {"pest_yes_engine_yes": 0, "pest_yes_engine_no": 0, "pest_no_engine_yes": 0,
            "pest_no_engine_no": 0, "examples_engine_no": [], "examples_engine_yes": []}


def record(t, pest, ok, text):
    key = f"pest_{'yes' if pest else 'no'}_engine_{'yes' if ok else 'no'}"
    t[key] += 1
    if pest != ok:
        ex = t["examples_engine_yes" if ok else "examples_engine_no"]
        if len(ex) < 5:
            ex.append(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lark", required=True)
    ap.add_argument("--gbnf", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--lark-sample", type=int, default=500)
    a = ap.parse_args()
    corpus = [json.loads(l) for l in open(a.corpus, encoding="utf-8") if l.strip()]
    out = {"texts": len(corpus)}

    import lark
    lark_text = open(a.lark, encoding="utf-8").read()
    try:
        parser = lark.Lark(lark_text, start="start", parser="earley", lexer="dynamic")
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"error": f"lark does not load the Lark form: {e}"}))
        return 1
    t = tally()
    for c in corpus[: a.lark_sample]:
        try:
            parser.parse(c["text"])
            ok = True
        except lark.exceptions.LarkError:
            ok = False
        except RuntimeError as e:  # lark's Earley on some all-whitespace texts
            t.setdefault("errors", []).append({"text": c["text"], "error": str(e)})
            continue
        record(t, c["pest"], ok, c["text"])
    out["lark"] = t

    import llguidance
    gbnf_text = open(a.gbnf, encoding="utf-8").read()
    tok = llguidance.LLTokenizer(llguidance.TokenizerWrapper(ByteTokenizer()))
    try:
        grammar = llguidance.grammar_from("gbnf", gbnf_text)
        msg = llguidance.LLMatcher.validate_grammar(grammar, tok)
        if msg:
            raise ValueError(msg)
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"error": f"llguidance does not load the GBNF form: {e}"}))
        return 1
    t = tally()
    for c in corpus:
        m = llguidance.LLMatcher(tok, grammar, log_level=0)
        data = c["text"].encode("utf-8")
        ok = m.consume_tokens(list(data)) and m.is_accepting()
        record(t, c["pest"], ok, c["text"])
    out["gbnf_llguidance"] = t
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
