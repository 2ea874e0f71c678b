# %% [markdown]
# # A training run
#
# > The recipe of the training chapter run end to end: a toy run on procedural scenes, the book's run on the emoji set, the curves and report a person reads, the command line (alone or under torchrun), and the run every later chapter studies.

# %%
#| default_exp run

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import argparse, gc, json, os, re, sys
from dataclasses import fields, replace
from pathlib import Path
import torch
import torch.distributed as dist
from clip_annotated.core import get_device, hardware, in_test, markdown_table, one_line, run_command, wants_debug
from clip_annotated.model import CLIP, create_model
from clip_annotated.loss import world_info
from clip_annotated.runfolder import load_checkpoint, read_metrics
from clip_annotated.options import SAVED_BEFORE
from clip_annotated.train import PRESETS, TrainConfig, model_from_checkpoint, train

# %%
#| hide
import contextlib, io, math, shutil, tempfile
import numpy as np
from IPython.display import Image, Markdown, display
from fastcore.test import test_eq, test_close, test_fail
from clip_annotated.core import footer, pick, seed_everything, remove_scratch, scratch_dir
from clip_annotated.data import EmojiDataset
from clip_annotated.model import count_parameters
from clip_annotated.tokenizer import tokenize
from clip_annotated.retrieval import evaluate_retrieval

# %%
_ = seed_everything(0)
scratch = scratch_dir('clip_annotated_06a_')   # small runs of this chapter write here


# %% [markdown]
# [Training](06_train.ipynb) wrote the recipe and the loop: `train` leaves a checkpoint and
# `metrics.jsonl` in a run folder and returns a summary. This chapter is the layer a person uses: where
# runs live, the curves and `report.md`, a first run on a toy task and then the run the rest of the book
# studies, and the command line.
#
# ## Where runs live
#
# A preset's `out` is a folder name under `runs_dir()`: `runs/` at the top of the checkout, wherever
# the command is started from (a notebook runs in `nbs/`, `make` at the top), or `$CLIP_ANNOTATED_RUNS`.

# %%
#| exports
def runs_dir() -> Path:
    "Where runs live: $CLIP_ANNOTATED_RUNS, else runs/ at the top of the checkout we are in (found by settings.ini), else ./runs."
    if os.environ.get('CLIP_ANNOTATED_RUNS'): return Path(os.environ['CLIP_ANNOTATED_RUNS'])
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d/'settings.ini').is_file() and (d/'nbs').is_dir(): return d/'runs'
    return here/'runs'


# %% [markdown]
# The curves and the report. The figure is drawn with matplotlib's object-oriented API (no `pyplot`
# state), so the same code works in a notebook, a script and a headless server.

# %%
#| exports
def plot_curves(metrics_path: str | Path, png_path: str | Path) -> Path:
    "Loss (training, and held-out where measured), learning rate, temperature and held-out R@1 against step, from metrics.jsonl, saved as a PNG."
    from matplotlib.figure import Figure
    recs = read_metrics(metrics_path)
    steps = [r for r in recs if 'loss' in r]
    evals = [r for r in recs if 'eval' in r]
    fig = Figure(figsize=(12, 2.8))
    axes = fig.subplots(1, 4)
    x = [r['step'] for r in steps]
    axes[0].plot(x, [r['loss'] for r in steps], lw=0.6, label='training')
    if held := [r for r in evals if 'loss' in r['eval']]:
        axes[0].plot([r['step'] for r in held], [r['eval']['loss'] for r in held], 'o-', label='held-out')
        axes[0].legend(fontsize=8)
    axes[0].set(title='loss', xlabel='step')
    axes[1].plot(x, [r['lr'] for r in steps]); axes[1].set(title='learning rate', xlabel='step')
    axes[2].plot(x, [r['temperature'] for r in steps]); axes[2].set(title='temperature τ = 1/scale', xlabel='step')
    if evals:
        for key, label in (('i2t_R@1', 'image→text'), ('t2i_R@1', 'text→image')):
            axes[3].plot([r['step'] for r in evals], [100 * r['eval'][key] for r in evals], 'o-', label=label)
        axes[3].axhline(100 * evals[-1]['eval']['i2t_chance@1'], color='gray', ls=':', label='chance')
        axes[3].legend(fontsize=8)
    axes[3].set(title='held-out R@1 (%)', xlabel='step')
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    return Path(png_path)

def retrieval_table(m: dict, ks=(1, 5, 10)) -> str:
    "A markdown table of `retrieval_metrics` output, with chance levels."
    rows = [(name, *(f"{100 * m[f'{key}@{k}']:.1f}%" for k in ks)) for name, key in
            (('image → text', 'i2t_R'), ('text → image', 't2i_R'), ('chance, image → text', 'i2t_chance'),
             ('chance, text → image', 't2i_chance'))]
    return markdown_table(['direction', *(f'R@{k}' for k in ks)], rows)

def write_report(cfg: TrainConfig, summary: dict, path: str | Path) -> Path:
    "report.md: the run's configuration and data, held-out retrieval with chance levels, hardware and wall time."
    d = summary['data']
    pairs = (f"{d['train_items']:,} training pairs" if d['train_items'] is not None
             else f"streamed ({d.get('samples_read', 0):,} samples read by this process)")
    skipped = lambda k: f" (skipped: {', '.join(f'{c} {r}' for r, c in d[k].items())})" if d.get(k) else ''
    epochs = (f"{cfg.steps / summary['steps_per_epoch']:.1f} epochs" if summary['steps_per_epoch']
              else f"{len(summary['epoch_steps'])} full epochs")
    text = (f"# Training run `{summary['name']}`\n\n"
            f"- model: {cfg.model if not cfg.pretrained else 'from ' + cfg.pretrained} {cfg.model_overrides or ''} "
            f"({summary['parameters']:,} parameters)"
            + (f"; locked: {' and '.join(t for t, on in (('image tower', cfg.lock_image), ('text tower', cfg.lock_text)) if on)}"
               if cfg.lock_image or cfg.lock_text else '') + "\n"
            f"- data: {d['source']}, {pairs}{skipped('train_skipped')}; "
            f"held out: {d['held_out'] or 'none'}{skipped('held_out_skipped')}\n"
            f"- {cfg.steps:,} steps of {cfg.batch_size} ({epochs}), "
            f"lr {cfg.lr:g}, warm-up {cfg.warmup}, weight decay {cfg.weight_decay}, precision {cfg.precision}, "
            f"{summary['world_size']} process(es) on {summary['device']}\n"
            f"- hardware: {hardware()}, torch {torch.__version__}\n"
            f"- wall time: {summary['train_wall_s']:.0f} s training, {summary['total_wall_s']:.0f} s with evaluation "
            f"({cfg.steps * cfg.batch_size / max(summary['train_wall_s'], 1e-9):.0f} samples/s)\n\n")
    if 'test' in summary:
        t = summary['test']
        text += (f"## Held-out retrieval\n\n{t['n_images']} pictures of {d['held_out']} against all {t['n_texts']} of "
                 f"their captions at once:\n\n{retrieval_table(t)}\n")
    else: text += "No held-out data (--val-data), so no retrieval was measured.\n\n"
    Path(path).write_text(text + "![curves](curves.png)\n")
    return Path(path)

def train_and_report(cfg: TrainConfig, datasets: tuple | None = None) -> dict:
    "`train`, then (on rank 0) the run's curves.png and report.md: what the command line runs."
    summary = train(cfg, datasets)
    if world_info()[0] == 0:
        out = Path(summary['dir'])
        summary['curves'] = str(plot_curves(out/'metrics.jsonl', out/'curves.png'))
        summary['report'] = str(write_report(cfg, summary, out/'report.md'))
    return summary


# %% [markdown]
# ## The toy: procedural scenes
#
# Before the real data, the machinery has to prove itself on something small and checkable, as the
# Annotated Transformer proves its model on copying sequences. The [procedural scenes](05b_scenes.ipynb) are
# coloured shapes drawn on the fly with captions that say what they are; a small MiniCLIP (two layers
# per tower) trained for a short while must bring the loss down from about $\ln 64$ and retrieve
# held-out scenes' captions far above chance.

# %%
#| fig-cap: "Training curves of the toy run on procedural scenes: loss, learning rate, temperature and held-out recall at 1."
#| fig-alt: "Four small plots against training step. The training loss starts close to ln 64 and falls well below it; the learning rate warms up over the first 20 steps and then decays along a cosine; the temperature changes slowly; the held-out R@1 panel, measured every 25 steps, climbs in both directions far above the chance line near 0."
toy = replace(PRESETS['scenes-tiny'], out=str(scratch/'scenes'), steps=pick(gpu=300, cpu=150, test=4),
              warmup=pick(gpu=20, cpu=20, test=2), ckpt_every=pick(gpu=100, cpu=50, test=2),
              eval_every=pick(gpu=50, cpu=25, test=0), progress=False)         # evaluation does not change training
toy_res = train_and_report(toy)
toy_log = [r for r in read_metrics(scratch/'scenes'/'metrics.jsonl') if 'loss' in r]
first, last = np.mean([r['loss'] for r in toy_log[:5]]), np.mean([r['loss'] for r in toy_log[-5:]])
print(f"{toy.steps} steps in {toy_res['train_wall_s']:.0f} s: loss {first:.2f} -> {last:.2f} (ln {toy.batch_size} = "
      f"{math.log(toy.batch_size):.2f}); held-out image→text R@1 {100 * toy_res['test']['i2t_R@1']:.1f}% "
      f"(chance {100 * toy_res['test']['i2t_chance@1']:.1f}%)")
test_eq(len(toy_log), toy.steps)
assert (scratch/'scenes'/'checkpoint.pt').exists() and (scratch/'scenes'/'report.md').exists()
if not in_test(): assert last < first - 1 and toy_res['test']['i2t_R@1'] > 2 * toy_res['test']['i2t_chance@1']
display(Image(filename=toy_res['curves']))

# %% [markdown]
# ## Emoji
#
# Now the run this book reports: the `mini-cpu` preset, MiniCLIP on the emoji training split, then
# retrieval on the held-out test split. Run as a script it is
# `python -m clip_annotated.run --preset mini-cpu --out runs/mini` (or `make reproduce`); here it
# runs in the notebook, into the same `runs/mini`. Like the script, the cell resumes: if `runs/mini` already holds the finished run, it
# reads the checkpoint, evaluates it, and reports the wall time the training took when it ran.

# %%
#| fig-cap: "Training curves of the book model, the mini-cpu preset on the emoji set: loss, learning rate, temperature and held-out recall at 1 in both directions."
#| fig-alt: "Four small plots against training step up to 1000. The training loss starts near ln 128, falls steeply and then flattens near zero, while the held-out loss, measured every 250 steps, stays about level from its first measurement on; the learning rate warms up to its peak over 100 steps and decays along a cosine; the temperature falls from its initial value; held-out R@1 for image to text and text to image, measured every 250 steps, climbs and stays far above the chance line near 0."
mini = PRESETS['mini-cpu']
mini = replace(mini, out=pick(gpu=str(runs_dir()/'mini'), cpu=str(runs_dir()/'mini'), test=str(scratch/'mini')), progress=not in_test(),
               steps=pick(gpu=mini.steps, cpu=mini.steps, test=3), eval_every=pick(gpu=mini.eval_every, cpu=mini.eval_every, test=0))
res = train_and_report(mini)
print(f"{res['steps']} steps, {res['train_wall_s']:.0f} s of training on {hardware()}")
display(Image(filename=res['curves']))
display(Markdown(retrieval_table(res['test'])))

# %%
if not in_test(): assert res['test']['i2t_R@1'] >= 0.35, res['test']

# %% [markdown]
# How good is that? Chance (the table's last rows) is one in the number of test captions at R@1. The
# test split of the data chapter holds out unseen *combinations* (a woman pilot with a dark skin tone,
# when training saw pilots, women and dark tones, only not together), and those the model can learn to
# compose. But it also holds out a random part of the other emoji, and some of their names contain a
# word that no training caption has (a country's flag, a zodiac sign). The embedding of a token that
# never occurs in training never receives a gradient, so for such a caption the text tower has nothing
# learned to go on beyond the caption's other words. Such captions are harder, not hopeless (retrieval
# among the test captions can still go by a seen word such as "flag"); [chapter 13](13_visualize.ipynb)
# measures how much harder. How many there are:

# %%
seen = set(tokenize([r.name for r in EmojiDataset('train', train=False).records], context_length=77, truncate=True).unique().tolist())
test_names = [r.name for r in EmojiDataset('test', train=False).records]
unseen = [n for n, row in zip(test_names, tokenize(test_names, context_length=77, truncate=True)) if not set(row.tolist()) <= seen]
print(f"{len(unseen)} of {len(test_names)} test captions ({len(unseen) / len(test_names):.0%}) contain a token no training "
      f"caption has, e.g. {unseen[:5]}")

# %% [markdown]
# Each evaluation also measures the held-out loss, in groups as large as the training batch so that both
# losses rank as many captions; the gap between it and the training loss is how far the model fits its
# training pairs beyond what carries over to new ones (the toy's loss panel shows both). For the book's run:

# %%
held_loss = [r for r in read_metrics(Path(res['dir']) / 'metrics.jsonl') if 'eval' in r and 'loss' in r['eval']]
if held_loss:
    step = held_loss[-1]['step']
    near = [r['loss'] for r in read_metrics(Path(res['dir']) / 'metrics.jsonl') if 'loss' in r and step - 50 < r['step'] <= step]
    print(f"step {step}: held-out loss {held_loss[-1]['eval']['loss']:.2f}, training loss {np.mean(near):.2f} (mean of the last 50 steps); "
          f"ln {mini.batch_size} = {math.log(mini.batch_size):.2f}, the loss of a model that cannot tell the captions apart")
else:
    print("this run was trained before the evaluations measured a held-out loss: its loss panel shows the training loss alone")


# %% [markdown]
# The two losses are not on equal terms: the training pairs are cropped at random and captioned from
# several templates, and a fifth of the held-out captions hold a word no training caption has (above).
# And while the held-out loss stays about level after its first measurement, held-out R@1 keeps climbing
# (the curves above): the loss also charges for confident mistakes, which R@1 does not count. This is
# one run. The [experiments chapter](16_experiments.ipynb) reruns this recipe with the held-out loss
# every 50 steps and follows the two losses through the run.

# %% [markdown]
# ## The model the later chapters study
#
# The chapters after this one measure a trained model: zero-shot accuracy, linear probes, robustness,
# bias. They all study the same one, the `mini-cpu` run in `runs/mini` at the top of the checkout
# (`make reproduce` writes it, and so does the cell above). `book_model` returns it, training it first
# when the run is missing or unfinished (resuming where it stopped). Any run folder loads with `load_run`, or with `clip_annotated.load(folder)` like a released model.

# %%
#| exports
def load_run(out: str | Path, device=None) -> tuple[CLIP, TrainConfig]:
    "(model in eval mode, its TrainConfig) from the checkpoint of run folder `out`."
    ckpt = Path(out)/'checkpoint.pt'
    if not ckpt.is_file(): raise FileNotFoundError(f"no checkpoint.pt in {out}: train there first (python -m clip_annotated.run --out {out})")
    ck = load_checkpoint(ckpt)
    model, _ = model_from_checkpoint(ck)
    known = {f.name for f in fields(TrainConfig)}
    saved = {**SAVED_BEFORE, **{k: v for k, v in ck['config'].items() if k in known}}
    cfg = TrainConfig(**{**saved, 'betas': tuple(saved['betas']), 'zoom': tuple(saved['zoom']), 'out': str(out)})
    return model.to(get_device(device)).eval(), cfg

def _finished(out: Path, steps: int) -> bool:
    return (out/'checkpoint.pt').is_file() and load_checkpoint(out/'checkpoint.pt')['data']['step'] >= steps

def book_model(device=None, preset: str = 'mini-cpu', out: str | Path | None = None) -> tuple[CLIP, TrainConfig]:
    "(model, config) of the run the later chapters study: `preset` in runs_dir(), trained first if unfinished (random weights when `in_test()`)."
    cfg = PRESETS[preset]
    if in_test(): return create_model(cfg.clip_config()).to(get_device(device)).eval(), cfg   # mechanics only
    cfg = replace(cfg, out=str(out or runs_dir()/Path(cfg.out).name))
    if not _finished(Path(cfg.out), cfg.steps): train_and_report(cfg)
    return load_run(cfg.out, device)


# %%
book, book_cfg = book_model()
test_eq(book_cfg.model, 'MiniCLIP'); assert not book.training
if not in_test():                                  # the run trained above, read back: the same held-out retrieval
    test_eq(Path(book_cfg.out).resolve(), Path(mini.out).resolve())
    test_close(evaluate_retrieval(book, EmojiDataset('test', train=False))['i2t_R@1'], res['test']['i2t_R@1'], eps=1e-6)
print(f"book_model(): {book_cfg.model} {book_cfg.model_overrides} from runs/{Path(book_cfg.out).name}, {count_parameters(book):,} parameters, "
      f"logit scale {book.logit_scale.exp().item():.1f}")


# %% [markdown]
# ## The command line, and many processes
#
# `main` turns every field of `TrainConfig` into an option (`--batch-size 256`, `--no-resume`,
# `--model-overrides '{"vision_layers": 6}'`) on top of a preset. The same command runs data-parallel
# under `torchrun`, one process per GPU (or several on a CPU, with gloo):
#
# ```sh
# python -m clip_annotated.run --preset mini-cpu --out runs/mini
# torchrun --nproc_per_node=4 -m clip_annotated.run --preset vit-b32-gpu --out runs/b32
# ```
#
# When a run under `torchrun` fails, torchrun ends with its own report: a traceback of its launcher
# and a summary of the processes that failed. The error itself is the summary's `traceback :` line,
# which reads `clip-annotated train: …` like any error of this book (each process writes it where
# torchrun looks, `TORCHELASTIC_ERROR_FILE`); above torchrun's report, rank 0 prints the same line
# and the other ranks print nothing of their own.
#
# Your own pairs use open_clip's option names: `--train-data` and `--val-data` take a CSV/TSV file
# (columns `filepath` and `title` unless `--csv-img-key`/`--csv-caption-key` say otherwise) or
# webdataset shards, and `--pretrained` starts from weights:
#
# ```sh
# clip-annotated train --train-data data/train.csv --val-data data/val.csv --out runs/mine
# torchrun --nproc_per_node=2 -m clip_annotated.run --train-data 'shards/{00000..00009}.tar' \
#     --dataset-resampled --train-num-samples 10000 --out runs/mine-shards
# clip-annotated train --pretrained runs/mini --lock-image --lr 1e-4 --train-data data/train.csv --out runs/mine-ft
# ```
#
# A run killed in the middle of an epoch and resumed ends with weights bit-identical to an uninterrupted
# one, and a two-process run writes its checkpoint from rank 0 only: `tests/test_train.py` checks both
# (with SIGKILL, and with two gloo processes), in subprocesses, when `make test` runs.
# <!-- tests/test_own_data.py runs two gloo processes on shards of
# 50, 50 and 7 pairs, with and without resampling, and checks that both ranks run the same steps in
# every epoch; that a CSV on two ranks hands each pair to one rank once per epoch; that fine-tuning
# logs its own learning rate from the first step and leaves a locked tower bit-identical; and that
# resuming with another learning rate is refused. -->

# %%
#| exports
def in_ipython() -> bool:
    "True inside an IPython shell (Jupyter, nbdev_test), where `__name__ == '__main__'` as well: the guard of every `python -m` entry point."
    import builtins
    return hasattr(builtins, 'get_ipython')

def _json_object(text: str):
    "An argparse type: JSON text (refused, not a traceback, when it is not)."
    try: return json.loads(text)
    except (ValueError, RecursionError) as e: raise argparse.ArgumentTypeError(f"not JSON ({one_line(e)[:80]})") from None

MAX_WHOLE = 2**31 - 1                               # the largest count an option takes (batch, steps, workers, ...)

def whole_number(least: int | None = None, most: int = MAX_WHOLE):
    "An argparse type: a whole number written in digits, at least `least` (when given) and at most `most`."
    at_least = f" ≥ {least}" if least is not None else ''
    def whole(text: str) -> int:
        t = text.strip()
        if not re.fullmatch(r'[+-]?[0-9]{1,30}', t): raise argparse.ArgumentTypeError(f"{text!r} is not a whole number{at_least}")
        if least is not None and int(t) < least: raise argparse.ArgumentTypeError(f"{text!r} is not a whole number{at_least}")
        if int(t) > most: raise argparse.ArgumentTypeError(f"{text!r} is more than {most:,}")
        return int(t)
    return whole

OPEN_CLIP_SAME = {'--wd': '--weight-decay', '--log-every-n-steps': '--log-every', '--grad-clip-norm': '--grad-clip'}
OPEN_CLIP_PRECISION = {'amp': 'fp16', 'amp_bf16': 'bf16', 'amp_bfloat16': 'bf16', 'fp32': 'fp32', 'bf16': 'bf16', 'fp16': 'fp16'}
OPEN_CLIP_REFUSED = {
    '--epochs': "this trainer counts optimiser steps: use --steps ≈ epochs × training pairs / --batch-size",
    '--accum-freq': "here --accum splits one batch into chunks: for open_clip's --batch-size B --accum-freq N use --batch-size B×N --accum N",
    '--save-frequency': "checkpoints are counted in steps: use --ckpt-every STEPS",
    '--val-frequency': "held-out retrieval is counted in steps: use --eval-every STEPS",
    '--zeroshot-frequency': "held-out retrieval is counted in steps: use --eval-every STEPS",
    '--report-to': "the run writes metrics.jsonl, curves.png and report.md in --out; there is no other logger"}
OPEN_CLIP_ALWAYS = ('--local-loss', '--gather-with-grad')   # what clip_loss always does

def _flag_value(argv: list[str], k: int) -> tuple[str, str | None, int]:
    "(flag, its value or None, the number of argv items they take) at argv[k], for --flag=value and --flag value."
    flag, eq, value = argv[k].partition('=')
    if eq: return flag, value, 1
    return flag, (argv[k + 1] if k + 1 < len(argv) and not argv[k + 1].startswith('--') else None), 2

def from_open_clip(argv: list[str]) -> list[str]:
    "`argv` with open_clip's training options written as ours (--wd, --precision amp, --name/--logs, ...); a ValueError with the translation for those that mean something else."
    out, k, name, logs = [], 0, None, None
    while k < len(argv):
        flag, value, used = _flag_value(argv, k)
        if flag in OPEN_CLIP_REFUSED: raise ValueError(f"{flag} is open_clip's: {OPEN_CLIP_REFUSED[flag]}")
        if flag in OPEN_CLIP_ALWAYS: k += 1; continue                     # our loss is always local, gathered with gradients
        if flag in OPEN_CLIP_SAME and value is not None: out += [OPEN_CLIP_SAME[flag], value]; k += used; continue
        if flag == '--precision' and value in OPEN_CLIP_PRECISION and value not in ('fp32', 'bf16', 'fp16'):
            out += ['--precision', OPEN_CLIP_PRECISION[value]]; k += used; continue
        if flag == '--lr-scheduler':
            if value != 'cosine': raise ValueError(f"--lr-scheduler {value}: this trainer has one schedule, linear warm-up then cosine (open_clip's 'cosine')")
            k += used; continue
        if flag in ('--beta1', '--beta2') and value is not None:
            raise ValueError(f"{flag} is open_clip's: give both as --betas BETA1 BETA2")
        if flag in ('--name', '--logs') and value is not None:
            name, logs = (value, logs) if flag == '--name' else (name, value); k += used; continue
        out.append(argv[k]); k += 1
    if (name or logs) and not any(a == '--out' or a.startswith('--out=') for a in out):
        out += ['--out', str(Path(logs or runs_dir()) / (name or 'run'))]
    return out

def parse_args(argv: list[str] | None = None, prog: str = 'clip-annotated train') -> TrainConfig:
    "A `TrainConfig` from the command line: `--preset NAME` plus any field as `--field-name VALUE` (`prog`: the command, in errors)."
    p = argparse.ArgumentParser(prog=prog, description="Train CLIP (Radford et al. 2021) on the "
                                "built-in pairs or your own (--train-data), from scratch or from weights (--pretrained).")
    p.add_argument('--preset', default='mini-cpu', choices=list(PRESETS), help="starting configuration (default mini-cpu)")
    for f in fields(TrainConfig):
        opt, default, h = '--' + f.name.replace('_', '-'), getattr(PRESETS['mini-cpu'], f.name), f.metadata['help']
        if isinstance(default, bool): p.add_argument(opt, action=argparse.BooleanOptionalAction, default=None, help=h)
        elif isinstance(default, dict): p.add_argument(opt, type=_json_object, default=None, help=h)
        elif isinstance(default, tuple): p.add_argument(opt, type=float, nargs=2, default=None, help=h)
        elif f.name == 'templates': p.add_argument(opt, nargs='+', default=None, help=h)
        elif f.name == 'data': p.add_argument(opt, choices=('emoji', 'scenes'), default=None, help=h)
        elif f.name in ('prefetch', 'train_num_samples', 'workers') or type(default) is int:   # the checks name the range
            p.add_argument(opt, type=whole_number(), default=None, help=h)
        else: p.add_argument(opt, type=str if default is None else type(default), default=None, help=h)
    p.add_argument('--debug', action='store_true', help="on an error, show the full traceback (default: one line)")
    args = vars(p.parse_args(from_open_clip(list(argv if argv is not None else sys.argv[1:]))))
    args.pop('debug')
    cfg = PRESETS[args.pop('preset')]
    if args['out'] is None: args['out'] = str(runs_dir() / Path(cfg.out).name)   # honours $CLIP_ANNOTATED_RUNS
    return replace(cfg, **{k: v for k, v in args.items() if v is not None})

def main(argv: list[str] | None = None) -> dict:
    "Command line entry point: `clip-annotated train` or `python -m clip_annotated.run [--preset NAME] [--out DIR] ...`."
    from_shell = argv is None                              # python -m clip_annotated.run: print the error, exit
    argv, debug = wants_debug(sys.argv[1:] if from_shell else list(argv))
    return run_command('clip-annotated train', _main, argv, from_shell=from_shell, debug=debug)

def _main(argv: list[str]) -> dict:
    summary = train_and_report(parse_args(argv))
    if world_info()[0] == 0 and (Path(summary['dir']) / 'report.md').exists():
        print(Path(summary['dir'], 'report.md').read_text())
    if dist.is_initialized():                   # all ranks done, and the DDP wrapper (which holds the group) freed
        gc.collect(); dist.barrier(); dist.destroy_process_group()
    return summary

if __name__ == '__main__' and not in_ipython(): main()

# %%
c = parse_args(['--preset', 'scenes-tiny', '--out', 'runs/x', '--batch-size', '32', '--no-resume',
                '--model-overrides', '{"vision_layers": 1}', '--betas', '0.9', '0.95', '--prefetch', '0'])
test_eq((c.data, c.out, c.batch_size, c.resume, c.model_overrides, c.betas, c.prefetch), ('scenes', 'runs/x', 32, False, {'vision_layers': 1}, (0.9, 0.95), 0))
test_eq(parse_args([]).steps, PRESETS['mini-cpu'].steps)
test_eq(Path(parse_args([]).out), runs_dir() / 'mini')                      # the preset's folder under runs_dir()
assert all(f.metadata.get('help') for f in fields(TrainConfig))           # every option has a help line
c = parse_args(['--train-data', 'pairs.csv', '--pretrained', 'runs/mini', '--lock-image', '--train-num-samples', '100'])
test_eq((c.train_data, c.pretrained, c.lock_image, c.train_num_samples), ('pairs.csv', 'runs/mini', True, 100))

c = parse_args(['--wd', '0.1', '--precision', 'amp_bf16', '--local-loss', '--gather-with-grad', '--lr-scheduler', 'cosine',
                '--logs', 'logs', '--name', 'try1', '--log-every-n-steps', '10'])   # open_clip's spellings
test_eq((c.weight_decay, c.precision, c.out, c.log_every), (0.1, 'bf16', 'logs/try1', 10))
test_fail(lambda: parse_args(['--epochs', '3']), contains='use --steps ≈ epochs × training pairs / --batch-size')
for bad, says in (('1e20', "argument --batch-size: '1e20' is not a whole number"), ('2' * 20, 'is more than 2,147,483,647')):
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try: parse_args(['--batch-size', bad]); raise AssertionError(f'--batch-size {bad} was taken')
        except SystemExit as e: test_eq(e.code, 2)                               # argparse's exit, its message first
    assert says in err.getvalue(), err.getvalue()
test_eq(parse_args(['--batch-size', '-4']).batch_size, -4)                   # the range is check_config's to name

# %% [markdown]
# ## Every option
#
# Every field of `TrainConfig` is an option; the training chapter introduces the ones its recipe needs.
# Here are all of them, with the value `--preset mini-cpu` gives and the help line `--help` prints (the
# checks each one passes are in [training options](05g_options.ipynb)):

# %%
#| echo: false
display(Markdown(markdown_table(['option', 'mini-cpu', 'what it sets'],
                                [(f"`--{f.name.replace('_', '-')}`", f"`{getattr(PRESETS['mini-cpu'], f.name)!r}`", f.metadata['help'])
                                 for f in fields(TrainConfig)], align='lll')))

# %% [markdown]
# ## What we measured
#
# The toy run's loss falls and its held-out retrieval is far above chance; and the `mini-cpu` run, on the
# hardware named below, gives the held-out retrieval and wall time summarised here (all printed by
# this run; the benchmark chapter compares our training step with open_clip's):

# %%
t = res['test']
print(f"mini-cpu: {res['steps']} steps of {mini.batch_size} on {res['device']} ({hardware()}), "
      f"{res['train_wall_s']:.0f} s of training ({res['train_wall_s'] / 60:.1f} min)")
print(f"emoji test split, {t['n_images']} pictures against {t['n_texts']} captions: "
      f"image→text R@1 {100 * t['i2t_R@1']:.1f}%, R@5 {100 * t['i2t_R@5']:.1f}%; "
      f"text→image R@1 {100 * t['t2i_R@1']:.1f}%, R@5 {100 * t['t2i_R@5']:.1f}% (chance R@1 {100 * t['i2t_chance@1']:.2f}%)")
print(f"toy (scenes): loss {first:.2f} -> {last:.2f}, held-out image→text R@1 {100 * toy_res['test']['i2t_R@1']:.1f}%")

# %%
_ = remove_scratch()
_ = footer()
