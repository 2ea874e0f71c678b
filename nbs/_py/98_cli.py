# %% [markdown]
# # The command line
#
# > `clip-annotated`: one command for the jobs of this book, each a thin layer over a chapter.

# %%
#| default_exp cli

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| exports
from __future__ import annotations
import argparse, json, sys
from dataclasses import replace
from pathlib import Path
from clip_annotated.core import get_device, hardware
from clip_annotated.train import PRESETS, load_run, parse_args, runs_dir, train
from clip_annotated.zeroshot import emoji_task, evaluate, predict, scene_task, zero_shot_section
from clip_annotated.bias import bias_section, fairface_probe, skewed_run
from clip_annotated.ethics import model_card, safety_notice

# %%
import contextlib, io, tempfile
from fastcore.test import test_eq, test_fail
from clip_annotated.core import footer
from clip_annotated.data import SceneDataset
import shutil


# %% [markdown]
# Installing the package (`pip install -e .`, which `make` does in `.venv`) puts a `clip-annotated`
# command on the path. Each subcommand parses its own options and calls one chapter's function; none of
# them holds logic of its own, so what the command does is what the chapter shows.
#
# | command | does | chapter |
# |---|---|---|
# | `clip-annotated train [--preset NAME] [--field VALUE ...]` | trains CLIP (`python -m clip_annotated.train`, also under `torchrun`) | [Training](06_train.ipynb) |
# | `clip-annotated reproduce [--out DIR] [--no-bias]` | the book's main run: `mini-cpu` on the emoji set, its captions-skewed twin, then the report (`make reproduce`) | [Training](06_train.ipynb), [Bias](11_bias.ipynb) |
# | `clip-annotated eval --model M --dataset D [--root DIR]` | zero-shot top-1/top-5/mean per-class recall of a model on a data set; `--dataset fairface`: the paper's bias probes | [Zero-shot](07_zeroshot.ipynb), [Evaluation data sets](07b_evalsets.ipynb), [Bias](11_bias.ipynb) |
# | `clip-annotated predict PICTURE LABEL [LABEL ...]` | ranks the labels for one picture, with probabilities | [Zero-shot](07_zeroshot.ipynb) |
#
# `reproduce` is `train` with the `mini-cpu` preset and `runs/mini` as defaults, followed by the
# measurements of the later chapters on the trained model, appended to `report.md` and saved with the
# training summary in `results.json`, and a model card (`model_card.md`, from the
# [broader impacts](15_ethics.ipynb) chapter). On the emoji set the measurements are:
#
# | section of report.md | key in results.json | what | cost |
# |---|---|---|---|
# | Zero-shot classification of held-out emoji | `zeroshot` | skin tone, gender, category by prompts ([Zero-shot](07_zeroshot.ipynb)) | seconds |
# | Bias: does the probe find a skew put into the captions? | `bias` | a second run, same configuration, women of six occupations captioned as men, in `bias-captions` next to `--out`; the man-or-woman probe on both ([Bias](11_bias.ipynb)) | as long as the main run (7 to 8 minutes on the book's 2-core CPU); `--no-bias` skips it |
#
# `results.json` also names the machine (`hardware`). `predict` prints the broader-impacts chapter's
# safety notice (on standard error) before its ranking.
# Running `reproduce` again does not train again: both runs resume from their checkpoints, find them
# finished, and the report is rewritten.

# %%
#| exports
def reproduce(argv: list[str] | None = None) -> dict:
    "The book's main run: `train --preset mini-cpu --out runs/mini` (any train option, and `--no-bias`), then report.md and results.json."
    argv = list(argv or [])
    bias = '--no-bias' not in argv
    argv = [a for a in argv if a != '--no-bias']
    cfg = parse_args(argv)
    if not any(a == '--out' or a.startswith('--out=') for a in argv):
        cfg = replace(cfg, out=str(runs_dir() / Path(PRESETS['mini-cpu'].out).name))
    summary = train(cfg)                                   # resumes a finished run at once: no training twice
    model, _ = load_run(cfg.out)
    sections = []
    if cfg.data == 'emoji':
        section, summary['zeroshot'] = zero_shot_section(model)
        sections.append(section)
        if bias:                                           # the captions-skewed twin, next to the main run
            skewed, _ = skewed_run(cfg=cfg, out=Path(cfg.out).parent / 'bias-captions', how='captions')
            section, summary['bias'] = bias_section(model, skewed)
            summary['bias']['run'] = str(Path(cfg.out).parent / 'bias-captions')
            sections.append(section)
    summary['hardware'] = hardware()
    with open(Path(cfg.out, 'report.md'), 'a') as f: f.writelines('\n' + s for s in sections)
    Path(cfg.out, 'results.json').write_text(json.dumps(summary, indent=1, default=str))
    model_card(cfg.out)                                    # model_card.md, from the files just written
    print(Path(cfg.out, 'report.md').read_text())
    return summary

def _train(argv: list[str] | None = None) -> dict:
    from clip_annotated.train import main as train_main
    return train_main(argv)

EMBEDDED = {'emoji-skin-tone': lambda n_px: emoji_task('skin_tone', image_size=n_px),
            'emoji-gender': lambda n_px: emoji_task('gender', image_size=n_px),
            'emoji-category': lambda n_px: emoji_task('category', image_size=n_px),
            'scenes-color': lambda n_px: scene_task('color', image_size=n_px),
            'scenes-shape': lambda n_px: scene_task('shape', image_size=n_px),
            'scenes-count': lambda n_px: scene_task('count', image_size=n_px)}

def _default_model() -> str:
    path = runs_dir() / 'mini'
    if not (path / 'checkpoint.pt').is_file():
        raise SystemExit(f"clip-annotated: no --model given and no trained run at {path}; run `make reproduce` "
                         f"first, or pass --model (a released name such as ViT-B/32, a checkpoint file or a run folder)")
    return str(path)

def _load_model(name: str | None, device: str | None):
    from clip_annotated.pretrained import load
    return load(name or _default_model(), device=device)

def eval_command(argv: list[str] | None = None) -> dict:
    "`clip-annotated eval`: zero-shot metrics of a model on an embedded task or one of the paper's data sets."
    from clip_annotated.evalsets import EVALSETS, load_evalset
    p = argparse.ArgumentParser(prog='clip-annotated eval', description="Zero-shot evaluation (top-1, top-5, mean per-class recall).")
    p.add_argument('--model', help="released name (ViT-B/32, ...), checkpoint file or run folder (default: runs/mini)")
    p.add_argument('--dataset', required=True, choices=[*EMBEDDED, *EVALSETS, 'fairface'], metavar='NAME',
                   help=f"one of: {', '.join([*EMBEDDED, *EVALSETS])}, or fairface (the bias chapter's probes)")
    p.add_argument('--root', help="folder of the data set's files (the paper's data sets)")
    p.add_argument('--download', action='store_true', help="download the data set into --root if it is missing")
    p.add_argument('--templates', choices=['ensemble', 'single'], default='ensemble', help="all templates (default) or the first")
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--device', help="cpu, cuda, cuda:1 (default: CUDA if available)")
    p.add_argument('--json', action='store_true', help="print the metrics as JSON")
    a = p.parse_args(argv)
    model, preprocess = _load_model(a.model, a.device)
    if a.dataset == 'fairface':                            # not top-k: the bias chapter's table of rates by group
        if not a.root: raise SystemExit("clip-annotated eval: --dataset fairface needs --root (the folder of fairface_label_val.csv)")
        table, m = fairface_probe(model, preprocess, a.root, batch_size=a.batch_size)
        print(json.dumps(m) if a.json else table)
        return m
    if a.dataset in EMBEDDED:
        task = EMBEDDED[a.dataset](model.visual.input_resolution)
        dataset, classnames, templates, single = task.dataset, task.classnames, task.templates, task.templates[:1]
    else:
        if not a.root: raise SystemExit(f"clip-annotated eval: --dataset {a.dataset} needs --root (the folder of its files)")
        dataset = load_evalset(a.dataset, a.root, transform=preprocess, download=a.download)
        classnames, templates, single = dataset.classnames, dataset.templates, dataset.single
    if a.templates == 'single': templates = single
    m = evaluate(model, dataset, classnames, templates, batch_size=a.batch_size, device=model.logit_scale.device)
    m.update(model=a.model or _default_model(), dataset=a.dataset, templates=len(templates))
    if a.json: print(json.dumps(m))
    else:
        print(f"{m['dataset']} ({m['n']} pictures, {m['classes']} classes, {m['templates']} templates), model {m['model']}:")
        for k in ('top1', 'top5', 'mean_per_class_recall'):
            if k in m: print(f"  {k:22} {100 * m[k]:6.2f}%" + (f"   (chance {100 * m['chance_' + k]:.2f}%)" if 'chance_' + k in m else ''))
    return m

def predict_command(argv: list[str] | None = None) -> list:
    "`clip-annotated predict PICTURE LABEL ...`: the labels ranked for one picture, with probabilities."
    p = argparse.ArgumentParser(prog='clip-annotated predict', description="Rank labels for a picture, zero-shot.")
    p.add_argument('picture', help="an image file")
    p.add_argument('labels', nargs='+', help="candidate labels, e.g. 'a dog' 'a cat'")
    p.add_argument('--model', help="released name (ViT-B/32, ...), checkpoint file or run folder (default: runs/mini)")
    p.add_argument('--template', action='append', help="prompt template with {} (repeatable; default: the label alone)")
    p.add_argument('--device')
    a = p.parse_args(argv)
    if not Path(a.picture).is_file(): raise SystemExit(f"clip-annotated predict: no picture at {a.picture}")
    model, preprocess = _load_model(a.model, a.device)
    safety_notice(file=sys.stderr)                         # the broader-impacts chapter's notice, before any result
    ranked = predict(model, preprocess, a.picture, a.labels, templates=a.template or ['{}'])
    for label, prob in ranked: print(f"{prob:7.2%}  {label}")
    return ranked

COMMANDS = {'train': _train, 'reproduce': reproduce, 'eval': eval_command, 'predict': predict_command}

def main(argv: list[str] | None = None):
    "`clip-annotated COMMAND [options]`: run the command's function (see `COMMANDS`); returns its result when given `argv`."
    from_shell = argv is None                         # the console script: exit status 0, nothing returned
    argv = sys.argv[1:] if from_shell else list(argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(f"usage: clip-annotated {{{','.join(COMMANDS)}}} [options]\n"
              f"       clip-annotated COMMAND --help   for the options of one command")
        return None
    if argv[0] not in COMMANDS:
        raise SystemExit(f"clip-annotated: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}")
    result = COMMANDS[argv[0]](argv[1:])
    return None if from_shell else result


# %% [markdown]
# A tiny run through the command line, as a user would type it, into a scratch folder (the real
# `reproduce` is what `make reproduce` runs; the training chapter shows its results):

# %%
scratch = Path(tempfile.mkdtemp(prefix='clip_annotated_98_'))
tiny = ['--preset', 'scenes-tiny', '--n-scenes', '128', '--batch-size', '32', '--steps', '2', '--warmup', '1',
        '--model-overrides', '{"vision_layers": 1, "transformer_layers": 1}', '--no-progress']
with contextlib.redirect_stdout(io.StringIO()) as printed:
    s = main(['train', *tiny, '--out', str(scratch / 'cli')])
test_eq(s['steps'], 2)
assert (scratch / 'cli' / 'report.md').exists() and '# Training run' in printed.getvalue()
with contextlib.redirect_stdout(io.StringIO()) as printed:
    s2 = main(['reproduce', *tiny, '--out', str(scratch / 'cli')])          # finished already: no training
test_eq(s2['steps'], 2)
def exits_with(argv, message):
    "main(argv) stops with SystemExit (a non-zero exit status from the shell) whose text contains `message`."
    try: main(argv)
    except SystemExit as e: assert message in str(e), e; return
    raise AssertionError(f"{argv} did not exit")
exits_with(['fly'], "unknown command 'fly'")
print(printed.getvalue()[:400])

# %% [markdown]
# `reproduce` on the emoji set with a model of one layer per tower and two steps: the twin with the
# women of six occupations captioned as men lands next to `--out`, the bias section in the report, its
# numbers in `results.json` (two steps of a tiny model: the numbers show the plumbing, nothing more);
# `--no-bias` leaves the section out. `tests/test_cli_bias.py` checks the same, and that a second run
# trains nothing.

# %%
tiny_emoji = ['--model-overrides', '{"vision_layers": 1, "transformer_layers": 1}', '--batch-size', '32', '--steps', '2',
              '--warmup', '1', '--eval-every', '0', '--no-progress']
with contextlib.redirect_stdout(io.StringIO()) as printed:
    s3 = main(['reproduce', *tiny_emoji, '--out', str(scratch / 'emoji' / 'mini')])
assert (scratch / 'emoji' / 'bias-captions' / 'checkpoint.pt').exists()
assert s3['bias']['summary'] == json.loads((scratch / 'emoji' / 'mini' / 'results.json').read_text())['bias']['summary']
report = printed.getvalue()
print(report[report.index('| model'):])
with contextlib.redirect_stdout(io.StringIO()) as printed:
    s4 = main(['reproduce', *tiny_emoji, '--out', str(scratch / 'emoji' / 'mini'), '--no-bias'])
assert 'bias' not in s4 and '## Bias' not in printed.getvalue() and 'hardware' in s4

# %% [markdown]
# `eval` and `predict` on that run's folder, offline: an embedded task, and one picture written to disk.

# %%
with contextlib.redirect_stdout(io.StringIO()) as printed:
    m = main(['eval', '--model', str(scratch / 'cli'), '--dataset', 'scenes-color', '--device', 'cpu'])
print(printed.getvalue())
test_eq((m['classes'], m['n']), (7, 400))
SceneDataset(4, seed=5).image(0).save(scratch / 'scene.png')
with contextlib.redirect_stdout(io.StringIO()) as printed:
    ranked = main(['predict', str(scratch / 'scene.png'), 'a red circle', 'a blue square', 'two green stars',
                   '--model', str(scratch / 'cli'), '--device', 'cpu'])
print(printed.getvalue())
test_eq(sorted(l for l, _ in ranked), ['a blue square', 'a red circle', 'two green stars'])
exits_with(['predict', str(scratch / 'missing.png'), 'a cat'], 'missing.png')

# %%
shutil.rmtree(scratch, ignore_errors=True)
_ = footer()
