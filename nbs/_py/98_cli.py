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
#| export
from __future__ import annotations
import argparse, json, os, sys
from pathlib import Path

# %%
#| hide
import contextlib, functools, http.server, io, math, subprocess, tempfile, textwrap, threading
from unittest import mock
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from fastcore.test import test_eq, test_close
from clip_annotated.core import footer, remove_scratch, scratch_dir
from clip_annotated.scenes import SceneDataset, COLORS
from clip_annotated.checkpoints import sha256sum
from clip_annotated import pretrained
from clip_annotated.pretrained import load
from clip_annotated.zeroshot import encode_images, zero_shot_classifier, zero_shot_logits
from IPython.display import Markdown, display
import ast, importlib.util, shutil
from clip_annotated import __version__


# %% [markdown]
# Installing the package (`pip install -e .`, which `make` does in `.venv`) puts a `clip-annotated`
# command on the path. Each subcommand parses its own options (`clip-annotated COMMAND --help` lists
# them) and calls one chapter's functions; none of them holds logic of its own, so what the command
# does is what the chapter shows.
#
# | command | does | chapter |
# |---|---|---|
# | `train [--preset NAME] [--field VALUE ...]` | trains CLIP (`python -m clip_annotated.run`, also under `torchrun`) | [A training run](06a_run.ipynb) |
# | `reproduce [--out DIR] [--no-bias]` | the book's main run: `mini-cpu` on the emoji set, its captions-skewed twin, then the report (`make reproduce`); any `train` option too | [Training](06_train.ipynb), [Bias](11_bias.ipynb) |
# | `eval --model M --dataset NAME [--root DIR]` | zero-shot top-1/top-5/mean per-class recall on an embedded task or one of the paper's data sets; `fairface`: the paper's bias probes | [Zero-shot](07_zeroshot.ipynb), [Evaluation data sets](07b_evalsets.ipynb), [Bias](11_bias.ipynb) |
# | `eval --model M --data DIR_OR_CSV [--template T ...] [--classnames FILE]` | the same on your pictures: a folder per class, or a CSV of paths and labels | [Your own pictures](07c_pictures.ipynb) |
# | `eval --model M --retrieval PAIRS_CSV` | image→text and text→image recall@1/5/10 on your (image, caption) pairs | [A training run](06a_run.ipynb) |
# | `predict PICTURE LABEL [LABEL ...]` | ranks the labels for one picture, with probabilities | [Zero-shot](07_zeroshot.ipynb) |
# | `embed --model M --images DIR_OR_CSV [--texts FILE] --out DIR` | unit image (and text) features as `.npy`, with the list of files embedded | [Zero-shot](07_zeroshot.ipynb) |
# | `export SOURCE [--format {hf,open_clip}] --out DIR` | a run or checkpoint in Hugging Face's format (`hf`, the default) or open_clip's | [Released weights](03_pretrained.ipynb) |
# | `download NAME --to DIR` | one of OpenAI's released models (either spelling: `ViT-B/32`, `ViT-B-32`), SHA256 checked, to copy to a machine without internet | [Released weights](03_pretrained.ipynb) |
#
# Every accuracy is printed beside chance and the majority-class baseline (always answering the most
# frequent class; for mean per-class recall the two are the same, one over the number of classes), and
# every file a reader cannot open is skipped and counted rather than ending the
# run. Paths given on the command line are checked before a model is loaded, so a typo costs a second,
# not a model load.

# %%
#| echo: false
def top_imports(path) -> list[str]:
    "The modules that the top-level statements of the Python file `path` import (`__future__` left out)."
    names = []
    for node in ast.parse(Path(path).read_text()).body:
        if isinstance(node, ast.Import): names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != '__future__': names.append(node.module)
    return names
top = top_imports(importlib.util.find_spec('clip_annotated.cli').origin)
assert set(top) <= sys.stdlib_module_names, top
loaded = json.loads(subprocess.run([sys.executable, '-c', 'import json, sys, clip_annotated.cli; print(json.dumps(sorted(sys.modules)))'],
                                   capture_output=True, text=True, check=True).stdout)
chapters = [m for m in loaded if m.startswith('clip_annotated.') and m != 'clip_annotated.cli']
assert not chapters and 'torch' not in loaded, (chapters, 'torch' in loaded)     # `clip-annotated --help` stays quick
listing = lambda xs: ', '.join(xs[:-1]) + ' and ' + xs[-1] if len(xs) > 1 else xs[0]
display(Markdown(f"At its top the module imports only {listing([f'`{m}`' for m in top])}, all from Python's standard "
                 f"library, and importing it (what `clip-annotated --help` does) loads no chapter's module and not PyTorch: "
                 f"each command imports the chapters it calls when it runs."))


# %% [markdown]
# `reproduce` is `train` with the `mini-cpu` preset and `runs/mini` as defaults, followed by the
# measurements of the later chapters on the trained model, appended to `report.md` and saved with the
# training summary in `results.json`, and a model card (`model_card.md`, from the
# [broader impacts](15_ethics.ipynb) chapter). On the emoji set the measurements are:
#
# | section of report.md | key in results.json | what | cost |
# |---|---|---|---|
# | Zero-shot classification of held-out emoji | `zeroshot` | skin tone, gender, category by prompts ([Zero-shot on the book's tasks](07a_tasks.ipynb)) | seconds |
# | Bias: does the probe find a skew put into the captions? | `bias` | a second run, same configuration, the women of the bias chapter's skewed occupations captioned as men, in `bias-captions` next to `--out`; the man-or-woman probe on both ([Bias](11_bias.ipynb)) | as long as the main run; `--no-bias` skips it |
#
# `results.json` also names the machine (`hardware`). `predict` prints the broader-impacts chapter's
# safety notice (on standard error) before its ranking.
# Running `reproduce` again does not train again: both runs resume from their checkpoints, find them
# finished, and the report is rewritten.
#
# The landing page and the README set the paper's headline claims beside this run: the table is built
# from `results.json` by the [results table](98b_results.ipynb) appendix, whose `update_readme`
# (`make readme`) writes it into the README.

# %%
#| exports
def _fail(command: str, message: str, status: int = 2):
    "Stop with a one-line error (exit status 2 from the shell for bad input, as for a bad option; 1 for a failure)."
    from clip_annotated.core import CommandError
    raise CommandError(f"{f'clip-annotated {command}'.strip()}: {message}", status)

def _no_path(flag: str, path: str) -> str:
    "Why `path`, given as `flag`, cannot be read: missing, or a symbolic link that leads nowhere or loops."
    if os.path.islink(path): return f"{flag} {path} is a symbolic link to nothing that can be read (a loop, or a target that is gone)"
    return f"{flag} {path}: no such file or folder"

def _device(text: str) -> str:
    "An argparse type: a device this machine has (the training chapter's `check_device`)."
    from clip_annotated.train import check_device
    try: return check_device(text)
    except ValueError as e: raise argparse.ArgumentTypeError(str(e).split(': ', 1)[-1]) from None

DEBUG_HELP = "on an error, show the full traceback (default: one line; exit status 2 for bad input, 1 for a failure)"

def reproduce(argv: list[str] | None = None) -> dict:
    "`clip-annotated reproduce`: `train --preset mini-cpu --out runs/mini` (any train option, and `--no-bias`), then report.md and results.json."
    p = argparse.ArgumentParser(
        prog='clip-annotated reproduce',
        description="The book's main run: train MiniCLIP (preset mini-cpu) on the emoji set, then add the zero-shot and "
                    "bias sections to report.md, results.json and a model card. A finished run is not trained again.",
        epilog="Any option of `clip-annotated train` is also accepted (see `clip-annotated train --help`), "
               "e.g. --steps 200 --device cuda.")
    p.add_argument('--out', metavar='DIR', help="run folder (default: runs/mini, under $CLIP_ANNOTATED_RUNS if set); "
                                               "the bias twin goes next to it, in bias-captions")
    p.add_argument('--no-bias', action='store_true', help="skip the captions-skewed twin and the bias section "
                                                         "(the twin is a second run as long as the first)")
    p.add_argument('--debug', action='store_true', help=DEBUG_HELP)
    a, rest = p.parse_known_args(argv)
    from dataclasses import replace
    from clip_annotated.core import hardware
    from clip_annotated.train import PRESETS
    from clip_annotated.run import load_run, parse_args, runs_dir, train_and_report
    from clip_annotated.tasks import zero_shot_section
    from clip_annotated.bias import bias_run, bias_section
    from clip_annotated.ethics import model_card
    cfg = parse_args(rest, prog='clip-annotated reproduce')   # train's parser: it refuses options it does not know
    cfg = replace(cfg, out=a.out or str(runs_dir() / Path(PRESETS['mini-cpu'].out).name))
    summary = train_and_report(cfg)                        # resumes a finished run at once: no training twice
    model, _ = load_run(cfg.out)
    sections = []
    if cfg.data == 'emoji' and not cfg.train_data:          # emoji tasks and bias twin: for the emoji set only
        section, summary['zeroshot'] = zero_shot_section(model)
        sections.append(section)
        if not a.no_bias:                                  # the captions-skewed twin, next to the main run
            skewed, _ = bias_run('captions', cfg=cfg, out=Path(cfg.out).parent / 'bias-captions')
            section, summary['bias'] = bias_section(model, skewed)
            summary['bias']['run'] = str(Path(cfg.out).parent / 'bias-captions')
            sections.append(section)
    summary['hardware'] = hardware()
    with open(Path(cfg.out, 'report.md'), 'a') as f: f.writelines('\n' + s for s in sections)
    Path(cfg.out, 'results.json').write_text(json.dumps(summary, indent=1, default=str))
    model_card(cfg.out)                                    # model_card.md, from the files just written
    print(Path(cfg.out, 'report.md').read_text())
    return summary


# %%
#| exports
def _train(argv: list[str] | None = None) -> dict:
    "`clip-annotated train`: `clip_annotated.run.main(argv)`, whose --help lists every option."
    from clip_annotated.run import main as train_main
    return train_main(argv)

EMBEDDED = {'emoji-skin-tone': ('emoji', 'skin_tone'), 'emoji-gender': ('emoji', 'gender'),
            'emoji-category': ('emoji', 'category'), 'scenes-color': ('scenes', 'color'),
            'scenes-shape': ('scenes', 'shape'), 'scenes-count': ('scenes', 'count')}

def _embedded_task(name: str, n_px: int):
    "The zero-shot chapter's task `name` (a key of EMBEDDED) at the model's resolution."
    from clip_annotated.tasks import emoji_task, scene_task
    kind, attribute = EMBEDDED[name]
    return (emoji_task if kind == 'emoji' else scene_task)(attribute, image_size=n_px)

def _embedded_templates(task, which: str = 'ensemble') -> list:
    "The templates of an embedded task that fill to no training caption (chapter 7a's `zero_shot_templates`): all, or the first for 'single'."
    from clip_annotated.tasks import zero_shot_templates
    keep = zero_shot_templates(task)
    return keep[:1] if which == 'single' else keep

def _default_model() -> str:
    from clip_annotated.run import runs_dir
    path = runs_dir() / 'mini'
    if not (path / 'checkpoint.pt').is_file():
        _fail('', f"no --model given and no trained run at {path}; run `make reproduce` first, or pass --model "
                  f"(a released name such as ViT-B/32, a checkpoint file or a run folder)")
    return str(path)

def _load_model(name: str | None, device: str | None):
    from clip_annotated.pretrained import load
    return load(name or _default_model(), device=device)

MODEL_HELP = ("released name (ViT-B/32, ..., or open_clip's ViT-B-32, ...), checkpoint file, run folder or Hugging Face "
              "folder (default: runs/mini)")


# %% [markdown]
# ### `eval`
#
# One command, three kinds of data, chosen by exactly one of `--dataset` (a named set), `--data` (your
# pictures with labels) and `--retrieval` (your pictures with captions). For `--data` the class names
# become prompts through `--template` (repeatable; the embeddings of a class's prompts are averaged, the
# paper's ensembling), `'{}'` (the bare class name) by default; `--classnames` replaces the folder or
# label names when those are codes (`n01440764`, `3`). The readers are those of
# [Your own pictures](07c_pictures.ipynb); everything is read and checked before the model is loaded.
# `--retrieval` embeds every picture and every distinct caption, and scores as the held-out retrieval
# of [Retrieval](05f_retrieval.ipynb) does (`retrieval_metrics`): a picture listed in two rows counts as two pictures.
#
# The named sets are the paper's ([Evaluation data sets](07b_evalsets.ipynb), with OpenAI's templates)
# and the book's own tasks, embedded in the package (`EMBEDDED`: held-out emoji by skin tone, gender or
# kind; single-group scenes by colour, shape or count). The book's models were trained on captions that
# some of those tasks' templates spell out (a small red circle, say), and a prompt that is a training
# caption measures recall of the training data, not zero-shot transfer. So on an embedded set `eval`
# prompts only with the templates that fill to no training caption for any class, chapter 7a's
# `zero_shot_templates` ([Zero-shot on the book's tasks](07a_tasks.ipynb)): all of them by default,
# the first with `--templates single`. The printed title says how many prompts are training captions
# (none, unless `--template` brings some in), and `--json` carries the count as `caption_prompts`.
#
# `--json` prints the metrics as one JSON object: `chance_top1` and `chance_top5` are chance for top-1
# and top-5, and `chance` repeats `chance_top1` under a shorter name that scripts read.

# %%
#| exports
def _check_templates(templates: list[str], command: str) -> list[str]:
    "The templates, after checking that each has one '{}' and nothing else in braces (the training chapter's `check_template`)."
    from clip_annotated.train import check_template
    try: return [check_template(t) for t in templates]
    except ValueError as e: _fail(command, str(e))

def _reasons(counts: dict) -> str: return ', '.join(f"{n} {why}" for why, n in counts.items())

def _print_classification(m: dict, title: str):
    "The zero-shot metrics as text: each beside chance, then the majority-class baseline and what was skipped."
    print(title)
    for k in ('top1', 'top5', 'mean_per_class_recall'):
        if k not in m: continue
        chance = m.get('chance_' + k, 1 / m['classes'] if k == 'mean_per_class_recall' and m.get('classes') else None)
        also = ', the majority class too' if k == 'mean_per_class_recall' else ''    # one class always: recall 1 on it, 0 elsewhere
        print(f"  {k:22} {100 * m[k]:6.2f}%" + (f"   (chance {100 * chance:.2f}%{also})" if chance is not None else ''))
    if 'majority_top1' in m:
        print(f"  {'majority class':22} {100 * m['majority_top1']:6.2f}%   (always answering "
              f"{m.get('majority_class_name', m['majority_class'])!r}, the most frequent class)")
    if m.get('skipped'): print(f"  skipped {m['skipped']} of {m['n'] + m['skipped']} pictures ({_reasons(m['skipped_reasons'])})")

def _eval_data(a, templates: list[str]) -> dict:
    "eval --data: zero-shot metrics on a class-per-folder tree or a labelled CSV."
    from clip_annotated.pictures import LabelledCsv, SafeImageFolder
    from clip_annotated.zeroshot import evaluate
    try:
        ds = (SafeImageFolder(a.data) if Path(a.data).is_dir() else
              LabelledCsv(a.data, a.csv_img_key, a.csv_label_key, a.csv_separator))
    except (FileNotFoundError, ValueError) as e: _fail('eval', str(e))
    if len(ds) == 0: _fail('eval', f"{a.data} lists no pictures")
    classnames = ds.classnames
    if not a.classnames and all(c.isdigit() for c in ds.classes):
        print(f"clip-annotated eval: the labels of {a.data} are numbers, and the prompts will say them as numbers; "
              f"--classnames FILE gives the names", file=sys.stderr)
    if a.classnames:
        classnames = [l.strip() for l in Path(a.classnames).read_text(encoding='utf-8').splitlines() if l.strip()]
        if len(classnames) != len(ds.classes):
            _fail('eval', f"--classnames {a.classnames} has {len(classnames)} names but {a.data} has {len(ds.classes)} "
                          f"classes ({', '.join(ds.classes[:5])}{' …' if len(ds.classes) > 5 else ''}); give one name per class, in that order")
    model, preprocess = _load_model(a.model, a.device)
    ds.transform = preprocess
    try: m = evaluate(model, ds, classnames, templates, batch_size=a.batch_size, device=model.logit_scale.device,
                      num_workers=a.workers)
    except ValueError as e: _fail('eval', f"{a.data}: {e}")
    m.update(model=a.model or _default_model(), data=a.data, templates=len(templates), chance=m['chance_top1'],
             skipped=ds.skips.skipped, skipped_reasons=ds.skips.counts)
    if a.json: print(json.dumps(m))
    else: _print_classification(m, f"{a.data} ({m['n']} pictures, {m['classes']} classes, {m['templates']} template{'s' * (m['templates'] != 1)}), model {m['model']}:")
    return m

def _eval_retrieval(a) -> dict:
    "eval --retrieval: recall@1/5/10 both ways on a CSV of (image, caption) pairs."
    import torch
    from clip_annotated.data import SkipCounter
    from clip_annotated.pictures import caption_pairs
    from clip_annotated.retrieval import retrieval_metrics
    no_caption = SkipCounter()                                             # rows without a usable caption, by reason
    try: paths, captions = caption_pairs(a.retrieval, a.csv_img_key, a.csv_caption_key, a.csv_separator, skips=no_caption)
    except ValueError as e: _fail('eval', str(e))
    rows = [i for i, c in enumerate(captions) if c]                      # rows with a caption
    if not rows: _fail('eval', f"{a.retrieval}: no row has a caption in column {a.csv_caption_key!r}")
    model, preprocess = _load_model(a.model, a.device)
    try: feats, kept, skips = _embed_files(model, preprocess, [paths[i] for i in rows], a.batch_size, None, a.workers, None)
    except ValueError as e: _fail('eval', f"{a.retrieval}: {e}")
    caps = [captions[rows[j]] for j in kept]
    texts = list(dict.fromkeys(caps))                                    # distinct captions, in order of appearance
    index = {c: j for j, c in enumerate(texts)}
    m = retrieval_metrics(feats, embed_texts(model, texts, a.batch_size, progress=False), (1, 5, 10),
                          torch.tensor([index[c] for c in caps]))
    reasons = {**skips.counts}
    for why, n in no_caption.counts.items(): reasons[why] = reasons.get(why, 0) + n
    m.update(model=a.model or _default_model(), data=a.retrieval, skipped=skips.skipped + len(captions) - len(rows),
             skipped_reasons=reasons)
    if a.json: print(json.dumps(m)); return m
    print(f"{a.retrieval} ({m['n_images']} pictures, {m['n_texts']} distinct captions), model {m['model']}:")
    for name, key in (('image → text', 'i2t'), ('text → image', 't2i')):
        print(f"  {name}  " + '   '.join(f"R@{k} {100 * m[f'{key}_R@{k}']:6.2f}% (chance {100 * m[f'{key}_chance@{k}']:.2f}%)"
                                         for k in (1, 5, 10)))
    if m['skipped']: print(f"  skipped {m['skipped']} of {m['n_images'] + m['skipped']} rows ({_reasons(m['skipped_reasons'])})")
    return m

def eval_command(argv: list[str] | None = None) -> dict:
    "`clip-annotated eval`: zero-shot metrics on a named data set or your own pictures, or retrieval on your own pairs."
    from clip_annotated.evalsets import EVALSETS, load_evalset
    from clip_annotated.run import whole_number
    p = argparse.ArgumentParser(
        prog='clip-annotated eval',
        description="Zero-shot classification (top-1, top-5, mean per-class recall, beside chance and the majority class) "
                    "on a named data set or your own labelled pictures, or retrieval recall@k on your own pairs.",
        epilog="examples:\n  clip-annotated eval --model ViT-B/32 --dataset cifar10 --root ~/data/cifar --download\n"
               "  clip-annotated eval --model runs/mini --data photos/ --template 'a photo of a {}.'\n"
               "  clip-annotated eval --model runs/mini --data labels.csv --csv-label-key species --json\n"
               "  clip-annotated eval --model runs/mini --retrieval pairs.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', help=MODEL_HELP)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument('--dataset', choices=[*EMBEDDED, *EVALSETS, 'fairface'], metavar='NAME',
                      help=f"a named set: {', '.join([*EMBEDDED, *EVALSETS])}, or fairface (the bias chapter's probes)")
    what.add_argument('--data', metavar='DIR_OR_CSV', help="your pictures: a folder with one subfolder per class "
                      "(DIR/class_name/*.jpg; '_' in a folder name reads as a space), or a CSV/TSV of image paths and labels")
    what.add_argument('--retrieval', metavar='PAIRS_CSV', help="your (image, caption) pairs, a CSV/TSV: "
                      "image→text and text→image recall@1/5/10")
    g = p.add_argument_group('named data sets (--dataset)')
    g.add_argument('--root', help="folder of the data set's files")
    g.add_argument('--download', action='store_true', help="download the data set into --root if it is missing")
    g.add_argument('--templates', choices=['ensemble', 'single'], default='ensemble',
                   help="all of the set's templates (default) or the first; for the book's sets (emoji-*, scenes-*), only "
                        "those that fill to no training caption, so the score is zero-shot (chapter 7a's zero_shot_templates)")
    g = p.add_argument_group('your data (--data, --retrieval)')
    g.add_argument('--template', action='append', metavar='T', help="prompt with {} for the class name; repeat to "
                   "average several (default: '{}', the bare name; with --dataset it replaces the set's templates)")
    g.add_argument('--classnames', metavar='FILE', help="class names, one per line, in sorted-label order, "
                   "instead of the folder or label names")
    g.add_argument('--csv-img-key', default='filepath', help="CSV column of image paths, relative to the CSV's folder (default filepath)")
    g.add_argument('--csv-label-key', default='label', help="CSV column of class labels, names or numbers (default label)")
    g.add_argument('--csv-caption-key', default='title', help="CSV column of captions, for --retrieval (default title)")
    g.add_argument('--csv-separator', help="CSV separator (default: tab for .tsv/.tab, else comma)")
    p.add_argument('--batch-size', type=whole_number(1), default=256)
    p.add_argument('--workers', type=whole_number(0, 256), default=0, help="DataLoader worker processes decoding pictures (default 0)")
    p.add_argument('--device', type=_device, help="cpu, cuda, cuda:1 (default: CUDA if available)")
    p.add_argument('--json', action='store_true', help="print the metrics as JSON")
    p.add_argument('--debug', action='store_true', help=DEBUG_HELP)
    a = p.parse_args(argv)
    templates = _check_templates(a.template, 'eval') if a.template else None
    if a.classnames and not a.data: _fail('eval', "--classnames goes with --data")
    for flag, path in (('--data', a.data), ('--retrieval', a.retrieval), ('--classnames', a.classnames)):
        if path and not Path(path).exists(): _fail('eval', _no_path(flag, path))
    if a.retrieval and Path(a.retrieval).is_dir(): _fail('eval', f"--retrieval {a.retrieval} is a folder; give a CSV/TSV of image,caption pairs")
    if a.data: return _eval_data(a, templates or ['{}'])
    if a.retrieval: return _eval_retrieval(a)
    if a.dataset not in EMBEDDED:
        if not a.root: _fail('eval', f"--dataset {a.dataset} needs --root (the folder of its files)")
        if not Path(a.root).expanduser().exists() and not (a.download and a.dataset != 'fairface'):
            _fail('eval', f"--root {a.root}: no such folder" + ('' if a.dataset == 'fairface' else f" (pass --download to fetch {a.dataset} into it)"))
    if a.dataset == 'fairface':                            # not top-k: the bias chapter's table of rates by group
        from clip_annotated.bias import fairface_probe
        model, preprocess = _load_model(a.model, a.device)
        table, m = fairface_probe(model, preprocess, a.root, batch_size=a.batch_size)
        print(json.dumps(m) if a.json else table)
        return m
    from clip_annotated.zeroshot import evaluate
    if a.dataset in EMBEDDED:
        model, preprocess = _load_model(a.model, a.device)
        task = _embedded_task(a.dataset, model.visual.input_resolution)
        dataset, classnames = task.dataset, task.classnames
        all_templates, single = _embedded_templates(task), _embedded_templates(task, 'single')   # zero-shot: no training caption
    else:
        try: dataset = load_evalset(a.dataset, a.root, download=a.download)     # read (and checked) before the model
        except (FileNotFoundError, ValueError) as e: _fail('eval', str(e))
        model, preprocess = _load_model(a.model, a.device)
        dataset.transform = preprocess
        classnames, all_templates, single = dataset.classnames, dataset.templates, dataset.single
    templates = templates or (single if a.templates == 'single' else all_templates)
    m = evaluate(model, dataset, classnames, templates, batch_size=a.batch_size, device=model.logit_scale.device,
                 num_workers=a.workers)
    m.update(model=a.model or _default_model(), dataset=a.dataset, templates=len(templates), chance=m['chance_top1'])
    if a.dataset in EMBEDDED:                              # how many prompts are captions the book's models trained on
        from clip_annotated.tasks import caption_prompts
        m['caption_prompts'] = caption_prompts(task, templates)
    k = m.get('caption_prompts')
    said = '' if k is None else ', no prompt a training caption' if k == 0 else f", {k} prompts that are training captions: not zero-shot"
    if a.json: print(json.dumps(m))
    else: _print_classification(m, f"{m['dataset']} ({m['n']} pictures, {m['classes']} classes, {m['templates']} template{'s' * (m['templates'] != 1)}{said}), model {m['model']}:")
    return m


# %% [markdown]
# ### `predict`, `embed` and `export`
#
# `embed` is for the jobs CLIP's features do outside this book: search, deduplication, clustering, a
# linear probe in another library. It writes one unit-length float32 row per picture
# (`image_features.npy`) and, line for line, the file it came from (`image_files.txt`): for a folder
# every image file under it in sorted order, for a CSV its path column in file order, in both cases
# without the files that could not be read (they are counted on standard error). With `--texts`, the
# same for the lines of a text file, tokenized at the model's context length; a longer text is cut
# there, as OpenAI's `clip.tokenize(..., truncate=True)` does. Since the rows are unit vectors, the
# cosine similarity of picture `i` and text `j` is `image_features[i] @ text_features[j]`.
# `embed_images` and `embed_texts` are the same for a Python caller.
#
# `export` writes the folder through the pretrained-weights chapter's `export_model`, with a
# `README.md` that says what the model is, where it came from and how to load it with transformers,
# open_clip and this package (what the command prints as well). It refuses a training run's folder as
# `--out`: `--model RUN` would read the export from then on, not the run's checkpoint.

# %%
#| exports
def _embed_files(model, preprocess, paths: list, batch_size: int = 256, device=None, num_workers: int = 0,
                 progress: bool | None = True):
    "(unit features [n, d] float32 on CPU, indices of the files kept, SkipCounter) for image files, in order."
    from clip_annotated.pictures import ImageFiles
    from clip_annotated.zeroshot import encode_images
    files = ImageFiles(paths, preprocess)
    feats, index = encode_images(model, files, batch_size, device, num_workers, progress)
    return feats, index.tolist(), files.skips

def embed_images(model, preprocess, paths: list, batch_size: int = 256, device=None, num_workers: int = 0,
                 progress: bool | None = True) -> tuple:
    "(unit features [n, d] float32 on CPU, the paths kept, [(path, reason)] skipped) of image files, in the order given."
    feats, kept, _ = _embed_files(model, preprocess, paths, batch_size, device, num_workers, progress)
    keep = set(kept)
    skipped = [(p, 'missing image' if not Path(p).is_file() else 'corrupt image') for i, p in enumerate(paths) if i not in keep]
    return feats, [paths[i] for i in kept], skipped

def embed_texts(model, texts: list[str], batch_size: int = 256, device=None, progress: bool | None = True):
    "Unit text features [n, d] float32 on CPU, in batches, each text cut at the model's context length."
    import torch
    from tqdm import tqdm
    from clip_annotated.zeroshot import encode_texts            # tokenize(..., context_length=model's, truncate=True)
    starts = range(0, len(texts), batch_size)
    return torch.cat([encode_texts(model, texts[s:s + batch_size], batch_size, device)
                      for s in tqdm(starts, desc='encode texts', leave=False,
                                    disable=progress is False or (progress is None and len(starts) < 8))])

def embed_command(argv: list[str] | None = None) -> dict:
    "`clip-annotated embed`: unit image (and text) features of your files as .npy, with the list of what was embedded."
    from clip_annotated.run import whole_number
    p = argparse.ArgumentParser(
        prog='clip-annotated embed',
        description="Write L2-normalised float32 features: image_features.npy with image_files.txt (one path per line, "
                    "row for row), and with --texts, text_features.npy with texts.txt. Unreadable pictures are skipped, "
                    "counted on standard error and left out of image_files.txt.",
        epilog="cosine similarity of picture i and text j: np.load('image_features.npy')[i] @ np.load('text_features.npy')[j]")
    p.add_argument('--model', help=MODEL_HELP)
    p.add_argument('--images', metavar='DIR_OR_CSV', help="a folder (every image file under it, recursively, in sorted "
                   "order; hidden folders left out) or a CSV/TSV with a column of image paths (in file order)")
    p.add_argument('--texts', metavar='FILE', help="a text file, one text per line (blank lines left out); a text longer "
                   "than the model's context (77 tokens for OpenAI's models) is truncated")
    p.add_argument('--out', required=True, metavar='DIR', help="output folder, created if missing")
    p.add_argument('--csv-img-key', default='filepath', help="CSV column of image paths, relative to the CSV's folder (default filepath)")
    p.add_argument('--csv-separator', help="CSV separator (default: tab for .tsv/.tab, else comma)")
    p.add_argument('--batch-size', type=whole_number(1), default=256)
    p.add_argument('--workers', type=whole_number(0, 256), default=0, help="DataLoader worker processes decoding pictures (default 0)")
    p.add_argument('--device', type=_device, help="cpu, cuda, cuda:1 (default: CUDA if available)")
    p.add_argument('--debug', action='store_true', help=DEBUG_HELP)
    a = p.parse_args(argv)
    if not (a.images or a.texts): _fail('embed', "nothing to embed: give --images, --texts or both")
    for flag, path in (('--images', a.images), ('--texts', a.texts)):
        if path and not Path(path).exists(): _fail('embed', _no_path(flag, path))
    names, paths, texts = [], [], []
    if a.images:
        from clip_annotated.pictures import image_paths
        try: names, paths = image_paths(a.images, a.csv_img_key, a.csv_separator)
        except ValueError as e: _fail('embed', str(e))
        if not paths: _fail('embed', f"--images {a.images}: no image files found")
    if a.texts:
        texts = [l.strip() for l in Path(a.texts).read_text(encoding='utf-8').splitlines() if l.strip()]
        if not texts: _fail('embed', f"--texts {a.texts} has no non-blank line")
    import numpy as np
    from clip_annotated.core import show_progress
    model, preprocess = _load_model(a.model, a.device)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    summary = dict(model=a.model or _default_model(), out=str(out))
    if paths:
        try: feats, kept, skips = _embed_files(model, preprocess, paths, a.batch_size, None, a.workers, show_progress())
        except ValueError as e: _fail('embed', f"--images {a.images}: {e} ({', '.join(map(str, names[:3]))}{' …' if len(names) > 3 else ''})")
        np.save(out / 'image_features.npy', feats.numpy().astype(np.float32))
        (out / 'image_files.txt').write_text(''.join(f'{names[i]}\n' for i in kept), encoding='utf-8')
        if skips.skipped:
            left = [names[i] for i in sorted(set(range(len(paths))) - set(kept))]
            print(f"clip-annotated embed: skipped {skips.skipped} of {len(paths)} pictures ({_reasons(skips.counts)}): "
                  f"{', '.join(left[:3])}{' …' if len(left) > 3 else ''}", file=sys.stderr)
        summary.update(images=len(kept), skipped=skips.skipped, dim=feats.shape[1])
        print(f"wrote {out / 'image_features.npy'} ({len(kept)} × {feats.shape[1]} float32, unit rows) and {out / 'image_files.txt'}")
    if texts:
        T = embed_texts(model, texts, a.batch_size, progress=show_progress())
        np.save(out / 'text_features.npy', T.numpy().astype(np.float32))
        (out / 'texts.txt').write_text(''.join(f'{t}\n' for t in texts), encoding='utf-8')
        summary.update(texts=len(texts), dim=T.shape[1])
        print(f"wrote {out / 'text_features.npy'} ({len(texts)} × {T.shape[1]} float32, unit rows) and {out / 'texts.txt'}")
    return summary

def predict_command(argv: list[str] | None = None) -> list:
    "`clip-annotated predict PICTURE LABEL ...`: the labels ranked for one picture, with probabilities."
    p = argparse.ArgumentParser(prog='clip-annotated predict', description="Rank labels for a picture, zero-shot.")
    p.add_argument('picture', help="an image file")
    p.add_argument('labels', nargs='+', help="candidate labels, e.g. 'a dog' 'a cat'")
    p.add_argument('--model', help=MODEL_HELP)
    p.add_argument('--template', action='append', help="prompt template with {} (repeatable; default: the label alone)")
    p.add_argument('--device', type=_device, help="cpu, cuda, cuda:1 (default: CUDA if available)")
    p.add_argument('--debug', action='store_true', help=DEBUG_HELP)
    a = p.parse_args(argv)
    if not Path(a.picture).is_file(): _fail('predict', f"no picture at {a.picture}")
    templates = _check_templates(a.template, 'predict') if a.template else ['{}']
    from clip_annotated.zeroshot import predict, read_picture
    from clip_annotated.ethics import safety_notice, trained_on
    picture = read_picture(a.picture)                      # a picture that cannot be read fails before the model loads
    model, preprocess = _load_model(a.model, a.device)
    safety_notice(file=sys.stderr, trained_on=trained_on(a.model or _default_model()))   # before any result
    ranked = predict(model, preprocess, picture, a.labels, templates=templates)
    for label, prob in ranked: print(f"{prob:7.2%}  {label}")
    return ranked

def export_command(argv: list[str] | None = None) -> Path:
    "`clip-annotated export SOURCE --format hf|open_clip --out DIR`: a model in Hugging Face's or open_clip's format."
    p = argparse.ArgumentParser(prog='clip-annotated export',
                                description="Write a model's weights in Hugging Face's (transformers.CLIPModel) or "
                                            "open_clip's format, with what is needed to load them there.")
    p.add_argument('source', help="a training run's folder, a checkpoint file, a released name (ViT-B/32, ...) or a Hugging Face folder")
    p.add_argument('--format', choices=['hf', 'open_clip'], default='hf', help="hf (default) or open_clip")
    p.add_argument('--out', required=True, metavar='DIR', help="output folder")
    p.add_argument('--debug', action='store_true', help=DEBUG_HELP)
    a = p.parse_args(argv)
    from clip_annotated import pretrained
    if not Path(a.source).exists() and pretrained.released_name(a.source) is None:
        _fail('export', f"{a.source}: no such file or folder, and not a released model ({pretrained.released_names()})")
    if not hasattr(pretrained, 'export_model'): _fail('export', "this version of clip_annotated has no pretrained.export_model")
    try: written = Path(pretrained.export_model(a.source, a.out, format=a.format))
    except (FileNotFoundError, ValueError) as e: _fail('export', str(e))
    print(f"wrote {written} ({a.format}):")
    for f in sorted(f for f in written.rglob('*') if f.is_file()): print(f"  {f.relative_to(written)}  {f.stat().st_size:,} bytes")
    print("load it with:\n" + ''.join(f"  {line}\n" for line in pretrained.how_to_load(written).splitlines()))
    return written

def _offline_use(name: str, path: Path) -> str:
    "What to copy to a machine without internet, and the commands that use the file there."
    import shlex
    p, q = str(path), shlex.quote(str(path))
    return (f"copy this file to the machine without internet (to the same path, or change the path below):\n  {p}\n"
            f"and use it there:\n  clip-annotated predict PICTURE 'a dog' 'a cat' --model {q}\n"
            f"  clip-annotated train --pretrained {q} ...\n  model, preprocess = clip_annotated.load({p!r})\n"
            f"(or put it in that machine's cache folder, $CLIP_ANNOTATED_CACHE or ~/.cache/clip_annotated, and keep "
            f"using the name {name})")

def download_command(argv: list[str] | None = None) -> Path:
    "`clip-annotated download NAME --to DIR`: a released model's file, its SHA256 checked, to carry to a machine without internet."
    p = argparse.ArgumentParser(prog='clip-annotated download',
                                description="On a machine that is online: fetch one of OpenAI's released models into DIR and "
                                            "check it against the SHA256 its address carries; then say what to copy to a "
                                            "machine without internet and how to use it there. A file already in DIR with "
                                            "the right SHA256 is not fetched again.")
    p.add_argument('name', metavar='NAME', help="ViT-B/32, RN50, ... (OpenAI's names) or ViT-B-32, ... (open_clip's)")
    p.add_argument('--to', required=True, metavar='DIR', help="folder to put the file in, created if missing")
    p.add_argument('--debug', action='store_true', help=DEBUG_HELP)
    a = p.parse_args(argv)
    from clip_annotated.core import show_progress
    from clip_annotated.checkpoints import DownloadError, download
    from clip_annotated.pretrained import MODEL_URLS, released_name, released_names
    if (name := released_name(a.name)) is None: _fail('download', f"{a.name!r} is not a released model; choose one of {released_names()}")
    to = Path(a.to).expanduser()
    if to.exists() and not to.is_dir(): _fail('download', f"--to {a.to} is not a folder; give the folder to put {name}'s file in")
    url = MODEL_URLS[name]
    file = url.rsplit('/', 1)[-1]
    try: path = Path(download(url, to, progress=show_progress())).absolute()
    except DownloadError as e:                          # its first line names the URL and what went wrong
        why = str(e).splitlines()[0].rstrip('.')
        _fail('download', f"{file} was not saved: {why}. If this machine is offline, run this command on one that is "
                          f"online and copy {file} from its --to folder here; otherwise try again", status=1)
    print(f"{name}: {path} ({path.stat().st_size:,} bytes, SHA256 {url.rsplit('/', 2)[-2]}: checked)")
    print(_offline_use(name, path))
    return path


# %% [markdown]
# `main` dispatches on the first word; `clip-annotated --help` lists the commands from `COMMANDS`
# without importing any chapter. Errors follow the rule of the [preliminaries](00_prelims.ipynb): one
# line naming the input, exit status 2 for bad input (as `argparse` uses) and 1 for a failure while
# working, the traceback only with `--debug` (anywhere on the line) or `CLIP_ANNOTATED_DEBUG=1`.
# A warning on the way is one line too (`clip-annotated eval: warning: …`). Under `torchrun`
# (`torchrun … -m clip_annotated.run`), torchrun prints its own traceback and a summary when a process
# fails; the error is then the summary's `traceback : clip-annotated train: …` line, the last on the
# screen, and rank 0 prints it above as well ([A training run](06a_run.ipynb)).

# %%
#| exports
COMMANDS = {'train': _train, 'reproduce': reproduce, 'eval': eval_command, 'predict': predict_command,
            'embed': embed_command, 'export': export_command, 'download': download_command}
COMMAND_HELP = {
    'train': "train CLIP: a preset plus any setting as --field-name VALUE (your pairs: --train-data)",
    'reproduce': "the book's main run on the emoji set, its bias twin, report.md and results.json",
    'eval': "zero-shot top-1/top-5/per-class recall (named set or your pictures), or retrieval recall@k (your pairs)",
    'predict': "rank labels for one picture, with probabilities",
    'embed': "unit image and text features of your files, as .npy",
    'export': "write a run or checkpoint in Hugging Face's or open_clip's format",
    'download': "fetch a released model's file (SHA256 checked) to copy to a machine without internet"}

def usage() -> str:
    "The text of `clip-annotated --help`: every command with one line on what it does."
    lines = [f"  {name:10} {COMMAND_HELP[name]}" for name in COMMANDS]
    return ("usage: clip-annotated COMMAND [options]\n\nCLIP (Radford et al. 2021), annotated: commands\n" + '\n'.join(lines)
            + "\n\nclip-annotated COMMAND --help   lists the options of one command"
            + "\nclip-annotated --version        the version of this package"
            + "\nclip-annotated COMMAND --debug  shows the full traceback of an error (default: one line, "
              "exit status 2 for bad input, 1 for a failure)")

def main(argv: list[str] | None = None):
    "`clip-annotated COMMAND [options]`: run the command's function (see `COMMANDS`); returns its result when given `argv`."
    from_shell = argv is None                         # the console script: errors printed as one line, exit status
    argv = sys.argv[1:] if from_shell else list(argv)
    shown = [a for a in argv if a != '--debug']
    if not shown or shown[0] in ('-h', '--help'):
        print(usage())
        return None
    if shown[0] in ('-V', '--version'):
        from clip_annotated import __version__
        print(f"clip-annotated {__version__}")
        return None
    from clip_annotated.core import run_command, wants_debug   # torch: only once a command runs, so --help is quick
    argv, debug = wants_debug(argv)
    command = argv[0]
    def run(args):
        if command not in COMMANDS: _fail('', f"unknown command {command!r}; choose one of {', '.join(COMMANDS)}")
        return COMMANDS[command](args + ['--debug'] * debug)         # each command's parser knows --debug
    result = run_command(f"clip-annotated {command}" if command in COMMANDS else 'clip-annotated', run, argv[1:],
                         from_shell=from_shell, debug=debug)
    return None if from_shell else result


# %% [markdown]
# `python -m clip_annotated.cli` is the same command, for a Python whose scripts folder is not on the
# path. Its guard is `in_ipython` from [A training run](06a_run.ipynb), the one every `python -m` entry
# point of the book uses: a notebook also runs its cells as `__main__`, and running this chapter must
# not start the command.

# %%
#| exports
if __name__ == '__main__':                      # `python -m clip_annotated.cli`; not when a notebook runs this cell
    from clip_annotated.run import in_ipython   # here, not at the top: `clip-annotated --help` loads no torch
    if not in_ipython(): main()

# %%
version = subprocess.run([sys.executable, '-m', 'clip_annotated.cli', '--version'], capture_output=True, text=True, check=True).stdout
test_eq(version.strip(), f"clip-annotated {__version__}")
print(version.strip())

# %% [markdown]
# A tiny run through the command line, as a user would type it, into a scratch folder (the real
# `reproduce` is what `make reproduce` runs; the training chapter shows its results):

# %%
scratch = scratch_dir('clip_annotated_98_')
tiny = ['--preset', 'scenes-tiny', '--n-scenes', '128', '--batch-size', '32', '--steps', '2', '--warmup', '1',
        '--model-overrides', '{"vision_layers": 1, "transformer_layers": 1}', '--no-progress']
with contextlib.redirect_stdout(io.StringIO()) as printed:
    s = main(['train', *tiny, '--out', str(scratch / 'cli')])
test_eq(s['steps'], 2)
assert (scratch / 'cli' / 'report.md').exists() and '# Training run' in printed.getvalue()
with contextlib.redirect_stdout(io.StringIO()) as printed:
    s2 = main(['reproduce', *tiny, '--out', str(scratch / 'cli')])          # finished already: no training
test_eq(s2['steps'], 2)
def exits_with(argv, message, status=2):
    "main(argv) stops with a one-line error (exit status `status` from the shell) whose text contains `message`."
    try: main(argv)
    except SystemExit as e: assert message in str(e) and getattr(e, 'status', None) == status, e; return
    raise AssertionError(f"{argv} did not exit")
exits_with(['fly'], "unknown command 'fly'")
exits_with(['train', *tiny, '--steps', '0', '--out', str(scratch / 'none')], "--steps 0: must be a whole number ≥ 1")
exits_with(['train', *tiny, '--lr', '1e30', '--steps', '5', '--out', str(scratch / 'nan')], "training diverged", status=1)
report = printed.getvalue()
print(report[:report.index('## Held-out retrieval')].rstrip() + '\n…')     # its head: what was trained, where

# %% [markdown]
# `reproduce` on the emoji set with a model of one layer per tower and two steps: the twin with the
# women of the skewed occupations (the bias chapter's `SKEWED`) captioned as men lands next to `--out`, the bias section in the report, its
# numbers in `results.json` (two steps of a tiny model: the numbers show the plumbing, nothing more);
# `--no-bias` leaves the section out. The bias section of the report, from its table on:

# %%
tiny_emoji = ['--model-overrides', '{"vision_layers": 1, "transformer_layers": 1}', '--batch-size', '32', '--steps', '2',
              '--warmup', '1', '--eval-every', '0', '--no-progress']
with contextlib.redirect_stdout(io.StringIO()) as printed:
    s3 = main(['reproduce', *tiny_emoji, '--out', str(scratch / 'emoji' / 'mini')])
assert (scratch / 'emoji' / 'bias-captions' / 'checkpoint.pt').exists()
assert s3['bias']['summary'] == json.loads((scratch / 'emoji' / 'mini' / 'results.json').read_text())['bias']['summary']
report = printed.getvalue()
display(Markdown(report[report.index('| model'):]))
with contextlib.redirect_stdout(io.StringIO()) as printed:
    s4 = main(['reproduce', *tiny_emoji, '--out', str(scratch / 'emoji' / 'mini'), '--no-bias'])
assert 'bias' not in s4 and '## Bias' not in printed.getvalue() and 'hardware' in s4

# %%
#| echo: false
b = s3['bias']
shown = [b[m][part] for m in ('balanced', 'captions') for part in ('skewed', 'control', 'excess')] + [b['paired']]
size = max(abs(r[k]) for r in shown for k in ('gap', 'lo', 'hi'))
d, says = b['paired'], lambda r: 'excludes' if r['excludes_zero'] else 'includes'
sci = lambda r: f"{r['gap']:+.1e} [{r['lo']:+.1e}, {r['hi']:+.1e}]"
weights = [torch.load(scratch / 'emoji' / f / 'checkpoint.pt', map_location='cpu', weights_only=True)['model'] for f in ('mini', 'bias-captions')]
same = weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
if d['gap'] == d['lo'] == d['hi'] == 0:
    paired = ("the twin's excess minus this run's is exactly 0, with an interval of zero width" +
              (": the twin ended its two steps with weights identical to this run's" if same else ''))
else: paired = f"the twin's excess minus this run's is {sci(d)}, an interval that {says(d)} 0"
display(Markdown(
    f"A model two steps from random weights has learnt next to nothing: the largest separation, excess or interval bound "
    f"above is {size:.1e} in size" + (", so at four decimals every one of them prints as +0.0000 or -0.0000" if size < 5e-5 else '')
    + f". In more digits, {paired}; this run's own excess is {sci(b['balanced']['excess'])}. The rows show the "
      f"section's form, not a bias."))

# %% [markdown]
# `eval` and `predict` on the scenes run `cli` trained first above (two steps, one layer per tower),
# offline: an embedded task (prompted only with the templates that fill to no training caption), and
# one picture written to disk. `predict` writes its safety notice to standard error and its ranking to
# standard output; both are caught in one buffer here, so what is printed is the order they came in,
# the notice first.

# %%
with contextlib.redirect_stdout(io.StringIO()) as printed:
    m = main(['eval', '--model', str(scratch / 'cli'), '--dataset', 'scenes-color', '--device', 'cpu'])
print(printed.getvalue().replace(str(scratch), '<scratch>'))
test_eq((m['classes'], m['n'], m['caption_prompts']), (7, 400, 0))          # zero-shot: no prompt a training caption

# %%
#| echo: false
cli_model, _ = load(str(scratch / 'cli'), device='cpu')
task = _embedded_task('scenes-color', cli_model.visual.input_resolution)
feats, labels = encode_images(cli_model, task.dataset, progress=False)
answers = zero_shot_logits(feats, zero_shot_classifier(cli_model, task.classnames, _embedded_templates(task))).argmax(1)
test_close((answers == labels).float().mean().item(), m['top1'], eps=1e-6)          # the answers eval scored
counts = answers.bincount(minlength=len(task.classnames))
top, n_top = int(counts.argmax()), int(counts.max())
name, share = task.classnames[top], (labels == top).float().mean().item()
pc = lambda x: f"{100 * x:.2f}%"
if n_top == m['n']:
    said = (f"The two-step model gives every one of the {m['n']} pictures the same answer, '{name}'"
            + (", the most frequent class" if math.isclose(share, m['majority_top1'], abs_tol=1e-6) else '')
            + f": its top-1 ({pc(m['top1'])}) is then the share of '{name}' pictures"
            + (", which is the majority-class baseline," if math.isclose(share, m['majority_top1'], abs_tol=1e-6) else ',')
            + f" and its mean per-class recall ({pc(m['mean_per_class_recall'])}) is one over the {m['classes']} classes, "
              f"chance. Two steps taught it no colour: the lines above show the command's plumbing, not a model.")
else:
    said = (f"The two-step model's most frequent answer, '{name}', goes to {n_top} of the {m['n']} pictures; its top-1 "
            f"({pc(m['top1'])}) stands beside the majority-class baseline ({pc(m['majority_top1'])}) and chance "
            f"({pc(m['chance_top1'])}). The run had two steps: the lines above show the command's plumbing, not a model.")
display(Markdown(said))

# %%
SceneDataset(4, seed=5).image(0).save(scratch / 'scene.png')
with io.StringIO() as both:
    with contextlib.redirect_stdout(both), contextlib.redirect_stderr(both):   # standard error and output, in order
        ranked = main(['predict', str(scratch / 'scene.png'), 'a red circle', 'a blue square', 'two green stars',
                       '--model', str(scratch / 'cli'), '--device', 'cpu'])
    said = both.getvalue()
notice, ranking = said[:said.index(f"{ranked[0][1]:7.2%}")], said[said.index(f"{ranked[0][1]:7.2%}"):]
assert notice.startswith('Note:') and ranking.count('\n') == len(ranked), said          # the notice, then one line per label
print(textwrap.fill(notice.strip(), 100) + '\n\n' + ranking)
test_eq(sorted(l for l, _ in ranked), ['a blue square', 'a red circle', 'two green stars'])
exits_with(['predict', str(scratch / 'missing.png'), 'a cat'], 'missing.png')
(scratch / 'cut.png').write_bytes((scratch / 'scene.png').read_bytes()[:100])      # a picture cut short
exits_with(['predict', str(scratch / 'cut.png'), 'a cat', '--model', str(scratch / 'cli'), '--device', 'cpu'],
           'cut.png is not a picture that can be read')

# %% [markdown]
# Your own pictures, written to disk from the procedural scenes: one folder per colour, unbalanced
# (red three times as often as blue, plus a file that is not a picture), the same pictures as a
# labelled CSV, and as (picture, caption) pairs. The model is the two-step run above, so the numbers
# show the plumbing, not a model; the majority baseline is a fact of the data (12 of 20 are red).

# %%
own = scratch / 'own'
scenes = SceneDataset(400, seed=11)
by_colour = {c: [i for i in range(len(scenes)) if len(scenes.describe(i).objects) == 1
                 and scenes.describe(i).objects[0].color == c] for c in ('red', 'green', 'blue')}
rows, pairs = ['filepath,label'], ['filepath,title']
for colour, n in (('red', 12), ('green', 4), ('blue', 4)):
    for i in by_colour[colour][:n]:
        rel = f'folder/{colour}_thing/{i}.png'
        (own / rel).parent.mkdir(parents=True, exist_ok=True)
        scenes.image(i).save(own / rel)
        rows.append(f'{rel},{colour}_thing'); pairs.append(f'{rel},{scenes.describe(i).caption}')
(own / 'folder' / 'red_thing' / 'broken.png').write_bytes(b'not a png')
(own / 'labels.csv').write_text('\n'.join(rows) + '\n'); (own / 'pairs.csv').write_text('\n'.join(pairs) + '\n')
run = str(scratch / 'cli')
with contextlib.redirect_stdout(io.StringIO()) as printed:
    m_dir = main(['eval', '--model', run, '--data', str(own / 'folder'), '--template', 'a {}', '--device', 'cpu'])
print(printed.getvalue().replace(str(scratch), '<scratch>'))
with contextlib.redirect_stdout(io.StringIO()) as as_json:
    m_csv = main(['eval', '--model', run, '--data', str(own / 'labels.csv'), '--template', 'a {}', '--device', 'cpu', '--json'])
test_eq(json.loads(as_json.getvalue())['top1'], m_csv['top1'])
print(f"the same pictures as labels.csv, with --json: one JSON object for scripts, keys {', '.join(json.loads(as_json.getvalue()))}")
test_eq((m_dir['n'], m_dir['classes'], m_dir['skipped'], m_dir['majority_class_name']), (20, 3, 1, 'red thing'))
test_close(m_dir['majority_top1'], 12 / 20)
for k in ('top1', 'mean_per_class_recall', 'chance', 'majority_top1'): test_close(m_csv[k], m_dir[k], eps=1e-6)
with contextlib.redirect_stdout(io.StringIO()) as printed:
    r = main(['eval', '--model', run, '--retrieval', str(own / 'pairs.csv'), '--device', 'cpu'])
print(printed.getvalue().replace(str(scratch), '<scratch>'))
test_eq((r['n_images'], r['i2t_chance@1']), (20, 1 / r['n_texts']))

# %% [markdown]
# Errors come before the model: a missing path, a template without `{}`, a class-name file of the wrong
# length. The model name below does not exist, so a command that loaded it first would fail differently.

# %%
exits_with(['eval', '--model', 'no-such-model', '--data', str(own / 'nowhere')], 'nowhere: no such file or folder')
(own / 'loop').symlink_to(own / 'loop')                                     # a link to itself
exits_with(['eval', '--model', 'no-such-model', '--data', str(own / 'loop')], 'loop is a symbolic link to nothing that can be read')
(own / 'loop').unlink()
exits_with(['eval', '--model', 'no-such-model', '--data', str(own / 'folder'), '--template', 'a photo'], "'a photo'")
(own / 'names.txt').write_text('red\ngreen\n')
exits_with(['eval', '--model', 'no-such-model', '--data', str(own / 'folder'), '--classnames', str(own / 'names.txt')],
           'has 2 names but')
exits_with(['embed', '--model', 'no-such-model', '--images', str(own / 'nowhere'), '--out', str(own / 'x')], 'nowhere')
assert not (own / 'x').exists()

# %% [markdown]
# `embed` on the folder and three texts: one row per readable picture, in the order of
# `image_files.txt`, each of unit length and equal to the picture's embedding computed directly.

# %%
(own / 'texts.txt').write_text('a red circle\n\na blue square\n' + 'two green stars ' * 40 + '\n')
with contextlib.redirect_stdout(io.StringIO()) as printed, contextlib.redirect_stderr(io.StringIO()) as err:
    e = main(['embed', '--model', run, '--images', str(own / 'folder'), '--texts', str(own / 'texts.txt'),
              '--out', str(own / 'emb'), '--device', 'cpu'])
print(printed.getvalue().replace(str(scratch), '<scratch>'), err.getvalue().replace(str(scratch), '<scratch>'))
feats, files = np.load(own / 'emb' / 'image_features.npy'), (own / 'emb' / 'image_files.txt').read_text().splitlines()
test_eq((feats.shape[0], len(files), feats.dtype), (20, 20, np.float32))
test_eq(files, sorted(files)); assert not any('broken' in f for f in files) and 'skipped 1 of 21' in err.getvalue()
test_close(np.linalg.norm(feats, axis=1), np.ones(20), eps=1e-5)
model, preprocess = load(run, device='cpu')
with torch.no_grad(): direct = F.normalize(model.encode_image(preprocess(Image.open(files[7])).unsqueeze(0)), dim=-1)[0]
test_close(feats[7], direct.numpy(), eps=1e-5)
test_eq((own / 'emb' / 'texts.txt').read_text().splitlines()[:2], ['a red circle', 'a blue square'])
test_eq(np.load(own / 'emb' / 'text_features.npy').shape, (3, feats.shape[1]))

# %% [markdown]
# `export` hands over to the pretrained-weights chapter's `export_model`, when this version has it.

# %%
if hasattr(pretrained, 'export_model'):
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        written = main(['export', run, '--format', 'hf', '--out', str(scratch / 'hf')])
        main(['export', run, '--format', 'open_clip', '--out', str(scratch / 'oc')])
    print(printed.getvalue().replace(str(scratch), '<scratch>'))
    assert 'CLIPModel.from_pretrained' in printed.getvalue() and 'local-dir:' in printed.getvalue()
    test_close(load(str(written), device='cpu')[0].visual.proj.detach(), model.visual.proj.detach())
    assert 'open_clip.create_model_from_pretrained' in (scratch / 'oc' / 'README.md').read_text()
    exits_with(['export', run, '--out', run], "is a training run's folder (it holds checkpoint.pt")   # load would read the export
else: print("pretrained.export_model is not there yet: export not run")
print(usage())
assert all(name in usage() for name in COMMANDS)


# %% [markdown]
# `download` is for the first use on a machine without internet: run it where there is a network, copy
# the one file it names, and give its path to `--model`, `--pretrained` or `load` on the other
# machine. Here a web server on this machine's loopback interface stands in for OpenAI's: the address
# table points `MiniCLIP` at the run's checkpoint, its SHA256 in the address as in OpenAI's, so the
# whole route runs offline. A file whose SHA256 differs, and a host that cannot be reached, are
# one-line errors (exit status 1) that name the file and the address.

# %%
class QuietHandler(http.server.SimpleHTTPRequestHandler):
    "Serves a folder without logging each request on standard error."
    def log_message(self, *args): pass
served = scratch / 'served'
sha = sha256sum(Path(run) / 'checkpoint.pt')
for folder in (sha, '0' * 64):                                      # the true SHA256 in the address, and a wrong one
    (served / folder).mkdir(parents=True); shutil.copy(Path(run) / 'checkpoint.pt', served / folder / 'MiniCLIP.pt')
httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(QuietHandler, directory=str(served)))
threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True).start()
base = f'http://127.0.0.1:{httpd.server_address[1]}'
def shown(text): return text.replace(str(scratch), '<scratch>').replace(base, 'http://127.0.0.1:PORT')
with mock.patch.dict(pretrained.MODEL_URLS, {'MiniCLIP': f'{base}/{sha}/MiniCLIP.pt'}), \
     contextlib.redirect_stdout(io.StringIO()) as printed, contextlib.redirect_stderr(io.StringIO()):
    path = main(['download', 'MiniCLIP', '--to', str(scratch / 'to-copy')])
print(shown(printed.getvalue()))
test_eq(path, scratch / 'to-copy' / 'MiniCLIP.pt')
test_close(load(str(path), device='cpu')[0].visual.proj.detach(), model.visual.proj.detach())   # the offline side
for url, to in ((f'{base}/{"0" * 64}/MiniCLIP.pt', 'wrong'), (f'{base}/{sha}/MiniCLIP.pt', 'offline')):
    if to == 'offline': httpd.shutdown(); httpd.server_close()       # nobody listens any more
    with mock.patch.dict(pretrained.MODEL_URLS, {'MiniCLIP': url}), contextlib.redirect_stderr(io.StringIO()):
        try: main(['download', 'MiniCLIP', '--to', str(scratch / to)])
        except SystemExit as e: print(shown(str(e))); test_eq(e.status, 1); assert url in str(e) and 'MiniCLIP.pt' in str(e)
    assert not (scratch / to / 'MiniCLIP.pt').exists()

# %%
_ = remove_scratch()
_ = footer()
