# %% [markdown]
# # Training options
#
# > The checks a training run makes before it starts: every option refused with one line that names it when it cannot train as asked, and a resume refused when it would continue a run with other settings than its own.

# %%
#| default_exp options

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import json, math, string
from dataclasses import asdict, fields, replace
from pathlib import Path
import torch
from clip_annotated.core import one_line
from clip_annotated.model import HEAD_WIDTH, CONFIGS, CLIPConfig, create_model
from clip_annotated.tokenizer import VOCAB_SIZE
from clip_annotated.loss import world_info
from clip_annotated.readers import DATASET_TYPES

# %%
#| hide
import textwrap
from dataclasses import dataclass
from fastcore.test import test_eq, test_fail
from clip_annotated.core import footer


# %% [markdown]
# [Training](06_train.ipynb) describes a run with one dataclass, `TrainConfig`, and calls two functions of
# this appendix before it trains: `check_config`, which refuses a configuration that cannot train as asked,
# and `check_resume`, which refuses to continue a run with settings other than its own. Both read the
# configuration's fields by name, so this appendix needs nothing from the training chapter and comes before
# it, a layer below, as the [run folder](05e_run_folder.ipynb) and [input pipeline](05d_loader.ipynb)
# appendices do. (The command line's `--help`, one line per field of `TrainConfig`, is listed in
# [A training run](06a_run.ipynb).)
#
# ## Refusing what would go wrong
#
# A training run is long, and the worst outcome is not a crash but a wrong result reported as a good
# one, or an hour lost to a mistake a check could have caught in a second. A negative batch size would
# loop forever, a zero one divide by zero after a wasted step, `--steps 0` would write a report for an
# untrained model, a template without `{}` would give every class the same caption. `check_config`
# refuses each with one line naming the option, before any data is read or weights are built (it builds
# the model on PyTorch's `meta` device, which allocates nothing, to check `--model-overrides`).
# `check_template` and `check_device` also check the prompts and devices that the other commands of the
# command line are given.

# %%
#| exports
def check_template(t) -> str:
    "`t` if it is a caption template with one `{}` for the name (and no other braces), else a ValueError naming it and what is wrong."
    try: fields = [f for _, f, _, _ in string.Formatter().parse(t) if f is not None] if isinstance(t, str) else None
    except ValueError: fields = None                                       # a brace never closed, or never opened
    if fields == ['']: return t
    why = ("is not text" if not isinstance(t, str) else "has no '{}' for the name" if fields == [] else
           f"has {len(fields)} '{{}}' and there is one name to put in: keep one" if fields and set(fields) == {''} else
           "has braces other than one '{}' (write {{ and }} for a brace of its own)")
    raise ValueError(f"template {t!r} {why} (write e.g. 'a photo of a {{}}.')")

def check_device(device: str | None) -> str | None:
    "`device` if this machine has it (None: the default), else a ValueError naming it."
    if device is None: return None
    try: d = torch.device(device)
    except (RuntimeError, TypeError): raise ValueError(f"--device {device!r}: not a device; use cpu, cuda or cuda:N") from None
    if d.type == 'cuda' and not torch.cuda.is_available(): raise ValueError(f"--device {device}: no CUDA device here")
    if d.type == 'cuda' and (d.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if d.type not in ('cpu', 'cuda', 'mps', 'xpu'): raise ValueError(f"--device {device}: not a device to train on; use cpu or cuda")
    if d.type in ('mps', 'xpu'):
        try: torch.zeros(1, device=d).cpu()
        except Exception: raise ValueError(f"--device {device}: not usable here; use cpu or cuda") from None
    return device

def check_config(cfg):
    "`cfg` (a `TrainConfig`), after refusing (ValueError, naming the option) any setting that cannot train as asked."
    def bad(name, why): raise ValueError(f"--{name.replace('_', '-')} {getattr(cfg, name)!r}: {why}")
    def is_int(v): return isinstance(v, int) and not isinstance(v, bool)
    def is_num(v): return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    for name, (least, most) in dict(batch_size=(1, None), steps=(1, None), accum=(1, None), ckpt_every=(1, None),
                                    eval_every=(0, None), warmup=(0, None), seed=(0, 2**31 - 1), threads=(0, 1024),
                                    workers=(0, 256), n_scenes=(4, 10**7), log_every=(1, None)).items():   # scenes: a quarter is held out
        v = getattr(cfg, name)
        if name == 'workers' and v is None: continue                      # None: default_workers
        if not is_int(v) or v < least or (most is not None and v > most):
            bad(name, f"must be a whole number ≥ {least}" + (f" and ≤ {most:,}" if most is not None else ''))
    for name in ('prefetch', 'train_num_samples'):
        if getattr(cfg, name) is not None and (not is_int(getattr(cfg, name)) or getattr(cfg, name) < 1):
            bad(name, "must be a whole number ≥ 1")
    if cfg.accum > cfg.batch_size: bad('accum', f"cannot split a batch of {cfg.batch_size} into more chunks than samples")
    if not is_num(cfg.lr) or cfg.lr <= 0: bad('lr', "must be a positive number")
    if not is_num(cfg.eps) or cfg.eps <= 0: bad('eps', "must be a positive number")
    for name in ('weight_decay', 'grad_clip'):
        if not is_num(getattr(cfg, name)) or getattr(cfg, name) < 0: bad(name, "must be a number ≥ 0")
    if len(cfg.betas) != 2 or not all(is_num(b) and 0 <= b < 1 for b in cfg.betas): bad('betas', "must be two numbers in [0, 1)")
    if len(cfg.zoom) != 2 or not all(is_num(z) for z in cfg.zoom) or not 0 < cfg.zoom[0] <= cfg.zoom[1] <= 4:
        bad('zoom', "must be two numbers LOW HIGH with 0 < LOW <= HIGH <= 4")
    if cfg.precision not in ('auto', 'fp32', 'bf16', 'fp16'): bad('precision', "choose auto, fp32, bf16 or fp16")
    if cfg.data not in ('emoji', 'scenes'): bad('data', "the built-in sets are emoji and scenes (your own pairs: --train-data)")
    if cfg.dataset_type not in DATASET_TYPES: bad('dataset_type', f"choose one of {', '.join(DATASET_TYPES)}")
    if cfg.csv_separator is not None and len(cfg.csv_separator) != 1: bad('csv_separator', "must be one character")
    if not str(cfg.out).strip(): bad('out', "give a folder for the run")
    if cfg.templates is not None:
        if isinstance(cfg.templates, str) or not cfg.templates: bad('templates', "give one or more templates")
        for t in cfg.templates:
            try: check_template(t)
            except ValueError as e: raise ValueError(f"--templates: {e}") from None
    check_device(cfg.device)
    if cfg.model not in CONFIGS: bad('model', f"choose one of {', '.join(CONFIGS)}")
    if not isinstance(cfg.model_overrides, dict): bad('model_overrides', 'must be a JSON object, e.g. {"vision_layers": 6}')
    unknown = set(cfg.model_overrides) - {f.name for f in fields(CLIPConfig)}
    if unknown: bad('model_overrides', f"unknown field(s) {sorted(unknown)}; CLIPConfig has {[f.name for f in fields(CLIPConfig)]}")
    for k, v in cfg.model_overrides.items():
        ok = (is_int(v) and v > 0) or (k == 'vision_layers' and isinstance(v, (list, tuple)) and len(v) == 4
                                        and all(is_int(x) and x > 0 for x in v)) or (k == 'vision_patch_size' and v is None)
        if not ok: bad('model_overrides', f"{k} must be a positive whole number, not {v!r}")
        if (k.endswith('layers') and (v if is_int(v) else max(v)) > 1000) or (is_int(v) and v > 1_000_000):
            bad('model_overrides', f"{k} {v} is beyond any CLIP (at most 1,000 layers and 1,000,000 of anything else)")
    m = replace(CONFIGS[cfg.model], **cfg.model_overrides)
    if m.vocab_size < VOCAB_SIZE:
        bad('model_overrides', f"vocab_size {m.vocab_size} is smaller than the tokenizer's {VOCAB_SIZE:,} tokens: captions would "
                               f"hold ids the model has no embedding for")
    if m.context_length < 3:
        bad('model_overrides', f"context_length {m.context_length} leaves no room for a word between [SOS] and [EOS]: every "
                               f"caption would be the same; use 3 or more (OpenAI's models: 77)")
    if m.transformer_width % HEAD_WIDTH or m.transformer_heads != m.transformer_width // HEAD_WIDTH:   # as OpenAI's models, and load(), have it
        bad('model_overrides', f"transformer_width {m.transformer_width} with transformer_heads {m.transformer_heads}: "
                               f"use a multiple of 64 and one head per 64 channels (checkpoints do not record heads, so "
                               f"load, eval and export read them back that way)")
    if isinstance(m.vision_layers, int) and m.vision_width < HEAD_WIDTH:
        bad('model_overrides', f"vision_width {m.vision_width} leaves the ViT no attention head (one per 64 channels): use 64 or more")
    try:                  # shapes only, on the meta device (no memory), one block per stack: the others are alike
        shallow = replace(m, transformer_layers=1, vision_layers=1 if isinstance(m.vision_layers, int) else (1, 1, 1, 1))
        with torch.device('meta'): create_model(shallow)
    except Exception as e: bad('model_overrides', f"gives no valid model ({one_line(e)})")
    return cfg


# %%
test_eq(check_template('a photo of a {}.'), 'a photo of a {}.')
for t, says in (('an emoji', "has no '{}'"), ('a {} of a {}', "has 2 '{}'"), ('{x}', "braces other than one '{}'"), (3, 'is not text')):
    test_fail(lambda: check_template(t), contains=says)
test_eq(check_device(None), None); test_eq(check_device('cpu'), 'cpu')
test_fail(lambda: check_device('banana'), contains="--device 'banana': not a device")

# %% [markdown]
# The training chapter runs `check_config` on its presets and on broken settings, each refused with the
# option's name. <!-- tests/test_fuzz_options.py feeds it generated command lines and requires that every
# setting it accepts trains. -->
#
# ## Resuming only the same run
#
# Resuming continues *the same run*: the weights, the optimiser's moments, the schedule's position and
# the data order all come from the checkpoint. A command line that asks for something else (another
# learning rate, batch size, data set or model) cannot be honoured by a resume, and carrying on
# silently with the old settings would make the report lie about what was trained. So a resume first
# compares the saved configuration with the new one and refuses, naming each difference; to train on
# from a run's weights with new settings, start a new run from it with `--pretrained`. Settings that do
# not change what is trained (where logs go, threads, how often to evaluate or checkpoint, whether
# activations are recomputed) may differ. A field that a run's checkpoint predates counts as its
# default, except those in `SAVED_BEFORE`, which older runs trained with another value.

# %%
#| exports
FREE_ON_RESUME = {'out', 'resume', 'threads', 'prefetch', 'device', 'progress', 'eval_every', 'ckpt_every', 'workers',
                  'grad_checkpointing', 'log_every'}

SAVED_BEFORE = {'zoom': (1.0, 1.2)}     # options that older runs do not record, with the value they trained with

def config_changes(saved: dict, cfg) -> list[str]:
    "The fields (outside `FREE_ON_RESUME`) where `cfg` (a `TrainConfig`) differs from a run's saved configuration, as readable lines."
    plain = lambda v: json.loads(json.dumps(v, default=str))              # tuples and lists compare alike
    defaults = {**asdict(type(cfg)()), **SAVED_BEFORE}     # a field the run predates: its default
    return [f"{k.replace('_', '-')}: {saved.get(k, defaults[k])!r} in the run, {v!r} now"
            for k, v in asdict(cfg).items()
            if k not in FREE_ON_RESUME and plain(saved.get(k, defaults[k])) != plain(v)]

def check_resume(ck: dict, cfg, path: str | Path) -> None:
    "Refuse to resume checkpoint `ck` (at `path`) with a configuration or process count other than its own."
    changes = config_changes(ck['config'], cfg)
    if changes:
        raise ValueError(f"{path} was trained with other settings ({'; '.join(changes)}). Resume with the run's "
                         f"settings, use another --out (or --no-resume) for a new run, or fine-tune from it: "
                         f"--pretrained {Path(path).parent} --out {Path(path).parent}-finetuned")
    if ck['data']['world_size'] != world_info()[1]:   # the data order depends on how the epoch is dealt out
        raise ValueError(f"{path} was written by {ck['data']['world_size']} process(es), this run has {world_info()[1]}: "
                         "resume with the same number, or start afresh with --no-resume")


# %%
@dataclass
class Cfg:                                   # a stand-in for TrainConfig with four of its fields
    lr: float = 5e-4
    out: str = 'runs/mini'
    eval_every: int = 0
    zoom: tuple = (1.0, 1.05)

saved = asdict(Cfg(lr=1e-3))
test_eq(config_changes(saved, Cfg(lr=1e-3, out='elsewhere', eval_every=5)), [])          # where it logs may change
test_eq(config_changes(saved, Cfg()), ["lr: 0.001 in the run, 0.0005 now"])
older = {k: v for k, v in saved.items() if k != 'zoom'}                  # a run from before --zoom trained at SAVED_BEFORE's
test_eq(config_changes(older, Cfg(lr=1e-3)), ["zoom: (1.0, 1.2) in the run, (1.0, 1.05) now"])
test_fail(lambda: check_resume(dict(config=saved, data=dict(world_size=1)), Cfg(), Path('runs/x/checkpoint.pt')),
          contains='--pretrained runs/x --out runs/x-finetuned')
test_fail(lambda: check_resume(dict(config=saved, data=dict(world_size=2)), Cfg(lr=1e-3), Path('runs/x/checkpoint.pt')),
          contains='written by 2 process(es), this run has 1')

# %% [markdown]
# What a user sees: the one line each refusal prints (from the shell, `clip-annotated train` adds the
# command's name and exits with status 2).

# %%
for refused in (lambda: check_device('banana'), lambda: check_template('an emoji'),
                lambda: check_resume(dict(config=saved, data=dict(world_size=1)), Cfg(), Path('runs/x/checkpoint.pt'))):
    try: refused()
    except ValueError as e: print(textwrap.fill(str(e), 100, subsequent_indent='    '))   # wrapped for the page

# %%
_ = footer()
