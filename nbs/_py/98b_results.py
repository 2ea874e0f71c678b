# %% [markdown]
# # The results table
#
# > The paper's headline claims beside what `make reproduce` measured, in one Markdown table: `paper_table` builds it, the landing page shows it, and `make readme` writes it into the README.

# %%
#| default_exp results

# %%
#| hide
import json, tempfile
from dataclasses import asdict
from pathlib import Path
import torch
from fastcore.test import test_eq, test_fail
from clip_annotated.core import footer, remove_scratch, scratch_dir
from clip_annotated.train import PRESETS
from clip_annotated.model import create_model

# %% [markdown]
# Two places set the paper beside this book: the results section of the [landing page](index.ipynb) and
# the README's results block. Both hold the same table: the paper's headline figures in one column,
# this book's MiniCLIP in the next, and a last column that says whether the claim is only quoted here
# or checked in kind at this scale, and in which chapter. The landing page builds it when the page is
# executed; the README keeps a copy between two marker lines, which `make readme` rewrites. Both read
# the files that `make reproduce` leaves in `runs/mini` (`results.json`: training, held-out retrieval,
# zero-shot, the one-seed bias probe) and, once the [bias chapter](11_bias.ipynb) has run, its
# `runs/bias-seeds.json`, so no figure in either is typed by hand. This appendix is the machinery
# behind the two; a reader of the chapters needs only the table.

# %%
#| export
from __future__ import annotations
import json, os
from pathlib import Path

# %% [markdown]
# ## The table
#
# The first row is the scale of the run of the paper's best model, ViT-L/14 (§2.5, quoted in the
# [efficiency chapter](14_efficiency.ipynb)), because it is why the two columns cannot be equal: what a
# run of minutes on a few thousand emoji can check is whether an effect appears at all, and with what
# uncertainty. The paper's column is quoted, each figure with the section or table it comes from
# (`PAPER_CLAIMS`; the ImageNet zero-shot figure is read from the paper figures of
# [Evaluation data sets](07b_evalsets.ipynb), `PAPER_ZERO_SHOT`, so it is written down once). Ours is
# read from a run's `results.json`, each accuracy beside chance and the majority class and each
# difference beside its paired bootstrap interval, as the chapters print them. The last column's verdict is
# the one those intervals support ("above the majority class", "no gain shown"), and a claim that needs
# data a laptop does not have (Flickr30k, ImageNet, FairFace) is marked "quoted".
#
# Two notes come from the book's task definitions rather than from the run: how many of each emoji
# task's zero-shot prompts are a training caption once articles and punctuation are set aside
# (`near_captions`, with `normalised_caption_prompts` of the tasks chapter; "a man." is no training
# caption, "man" is), and, on the ensembling row, the tasks whose single template is itself a training
# caption, where the row is not the paper's comparison and the prompt chapter's pools of zero-shot
# templates make it instead. The one-seed bias line is written to three decimals like the seeds row
# (`bias_summary`).

# %%
#| exports
PAPER_CLAIMS = {  # Radford et al. 2021: the section or table each figure comes from
    'train': "ViT-L/14: 12 days on 256 V100 GPUs; 32 epochs of 400 M pairs, batch 32,768 (§2.5)",
    'i2t': "88.0% (Flickr30k, zero-shot, Table 13)",
    't2i': "68.7% (Flickr30k, zero-shot, Table 13)",
    'zs': "{imagenet}% top-1 (ImageNet, ViT-L/14@336px, Table 11)",
    'ens': "+3.5 points (ImageNet, 80 prompts, §3.1.4)",
    'bias': "FairFace probes: results differ by race and gender, depending on the classes offered (§7.1)",
}

def epochs_said(res: dict, batch_size: int) -> str:
    "The training run's epochs in words: full batches only, so an epoch leaves out the items too few for a last batch."
    steps, per_epoch, items = res['steps'], res['steps_per_epoch'], res['train_items']
    passes = f"{steps * batch_size / items:.1f} passes' worth of the {items:,} training emoji"
    if not per_epoch: return passes
    epochs = steps / per_epoch
    said = f"{epochs:.0f}" if epochs == round(epochs) else f"{epochs:.1f}"
    used = per_epoch * batch_size * res.get('world_size', 1)                   # every rank's full batches of an epoch
    if not 0 < items - used < batch_size * res.get('world_size', 1): return f"{said} epochs of {per_epoch:,} batches; {passes}"
    return (f"{said} epochs of {per_epoch:,} full batches: each epoch uses {used:,} of the {items:,} training emoji and "
            f"leaves out the last {items - used:,} of its own shuffled order, too few for a batch; so "
            f"{steps * batch_size / items:.1f} passes' worth of pictures")

def near_captions(z: dict) -> tuple[int, int] | None:
    "(prompts that are a training caption once normalised, prompts) of an emoji task's zero-shot templates, or None where the result's templates are not the book's."
    from clip_annotated.tasks import emoji_task, normalised_caption_prompts, zero_shot_templates
    if not z.get('task', '').startswith('emoji '): return None
    try: task = emoji_task(z['task'].removeprefix('emoji '))
    except ValueError: return None
    templates = zero_shot_templates(task)
    if len(templates) != z.get('prompts', {}).get('zero_shot'): return None     # results from other templates: say nothing
    return normalised_caption_prompts(task, templates), len(templates) * len(task.classnames)

def bias_summary(b: dict) -> str:
    "The one-seed bias probe of a `results.json` in words, to three decimals like the seeds row (its stored summary where the numbers are missing)."
    p, own = b.get('paired'), b.get('balanced', {}).get('excess')
    if not p or not own: return b['summary']
    ci = lambda d: f"{d['gap']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"
    says = lambda d: 'excludes' if d['lo'] > 0 or d['hi'] < 0 else 'includes'
    return ("one seed: excess man-or-woman separation of the twin whose women were captioned as men, minus this run's: "
            f"{ci(p)} (paired bootstrap; {says(p)} 0); this balanced run's own excess {ci(own)} ({says(own)} 0)")

def paper_table(res: dict, batch_size: int, seeds: dict | None = None, nbs: str = '') -> str:
    "Markdown table of the paper's headline claims beside a reproduce run's `results.json` (and the bias chapter's `bias-seeds.json`); chapter links start with `nbs`."
    from clip_annotated.core import markdown_table
    from clip_annotated.evalsets import PAPER_ZERO_SHOT
    from clip_annotated.zeroshot import wilson_interval
    def wilson(p, n):             # R@1 is a share of the n queries: its 95% Wilson interval from the count
        lo, hi = wilson_interval(round(p * n), n)
        return f"[{pct(lo)}, {pct(hi)}]"
    paper = {**PAPER_CLAIMS, 'zs': PAPER_CLAIMS['zs'].format(imagenet=PAPER_ZERO_SHOT['ViT-L/14@336px']['imagenet'])}
    pct = chance = lambda x: f"{100 * x:.1f}%" if x >= 0.01 else f"{100 * x:.2f}%"     # one format: 20.0%, 0.16%
    ci, link = (lambda r, k='diff': f"{100 * r[k]:+.1f} [{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}]"), (lambda title, nb: f"[{title}]({nbs}{nb}.ipynb)")
    test, zs = res['test'], {z['task']: z for z in res.get('zeroshot', [])}
    rows = [('training', paper['train'], f"{res['steps']:,} steps of {batch_size} ({epochs_said(res, batch_size)}), "
             f"{res['parameters'] / 1e6:.1f} M parameters: {res['train_wall_s'] / 60:.1f} min",
             f"quoted; trained here ({link('A training run', '06a_run')})"),
            *((f"retrieval R@1, {a} → {b}", paper[k], f"{pct(test[f'{k}_R@1'])} {wilson(test[f'{k}_R@1'], test.get(f'n_{q}', test['n_images']))} (95% Wilson interval over the {test.get(f'n_{q}', test['n_images']):,} queries; held-out emoji of the training distribution, not transfer; chance {chance(test[f'{k}_chance@1'])})",
               f"checked in kind ({link('A training run', '06a_run')})") for k, a, b, q in (('i2t', 'image', 'text', 'images'), ('t2i', 'text', 'image', 'texts')))]
    if zs:
        name = lambda z: {'emoji skin_tone': 'skin tone', 'emoji gender': 'gender', 'emoji category': 'kind of emoji'}.get(z['task'], z['task'])
        top1, vs = (lambda z: z.get('zero_shot_top1', z['ensemble_top1'])), (lambda z: f" {ci(z['vs_majority'])} points" if 'vs_majority' in z else '')
        reading = lambda z: z['vs_majority']['reading'] if 'vs_majority' in z else (
            'above the majority class' if top1(z) > max(z['chance'], z['majority']) else 'not above the majority class')
        near = {z['task']: k for z in zs.values() if (k := near_captions(z))}
        near_note = ('; prompts that are a training caption once articles and punctuation are set aside: '
                     + ', '.join(f"{name(zs[t])} {k} of {m}" for t, (k, m) in near.items())) if near else ''
        alike = [name(zs[t]) for t, (k, m) in near.items() if k == m]
        both = lambda names: ', '.join(names[:-1]) + ' and ' + names[-1] if len(names) > 1 else names[0]
        rows.append(('zero-shot classification', paper['zs'],
                     '; '.join(f"{name(z)} {pct(top1(z))} ({z['classes']} classes, chance {chance(z['chance'])}, "
                               f"majority class {pct(z['majority'])}: {reading(z)}{vs(z)})" for z in zs.values())
                     + (" (held-out emoji of the training distribution, not transfer; the book's templates that fill to no training caption, averaged in embedding space as the paper does"
                        f"{near_note}; against the majority class, 95% paired interval)" if all('zero_shot_top1' in z for z in zs.values()) else ''),
                     'checked in kind: ' + '; '.join(f"{r} on {', '.join(name(z) for z in zs.values() if reading(z) == r)}"
                                                     for r in dict.fromkeys(map(reading, zs.values())))
                     + (f"; on {both(alike)} each prompt differs from a training caption only by articles and punctuation" if alike else '')
                     + f" ({link('Zero-shot', '07a_tasks')})"))
    if (ens := [z for z in zs.values() if 'ensembling' in z]):
        gains = [name(z) for z in ens if z['ensembling']['excludes_zero'] and z['ensembling']['diff'] > 0]
        def captions(z):          # how many prompts of each arm are training captions, where the results say
            cp, n = z.get('caption_prompts', {}), z.get('prompts', {})
            if 'single' not in cp or 'ensemble' not in cp: return ''
            return (f" (training captions among the prompts: first {cp['single']} of {n['single'] * z['classes']}, "
                    f"all {cp['ensemble']} of {n['ensemble'] * z['classes']})")
        recalled = [name(z) for z in ens if z.get('caption_prompts', {}).get('single')]     # the first template a training caption
        rows.append(('prompt ensembling over one template', paper['ens'],
                     '; '.join(f"{name(z)} {ci(z['ensembling'])} points{captions(z)}" for z in ens) +
                     " (all templates − the first; an arm with a training caption among its prompts is not zero-shot; 95% paired "
                     "bootstrap over the held-out pictures)",
                     (f"a gain on {', '.join(gains)}" if gains else "no gain shown: every interval includes zero or lies below it")
                     + f" ({link('Zero-shot', '07a_tasks')})"
                     + (f"; on {both(recalled)} the first template fills to training captions, so there this is not the "
                        "paper's comparison of a zero-shot ensemble with a zero-shot default: template pools with no training "
                        f"caption make that one in {link('Prompt engineering', '09_prompt_engineering')}" if recalled else '')))
    if (b := res.get('bias')) and 'paired' in b:
        rows.append(('bias probe', paper['bias'], bias_summary(b), f"quoted; a controlled skew checked instead ({link('Bias', '11_bias')})"))
    if seeds:
        o = seeds['over_seeds']['captions']
        rows.append((f"bias probe, {len(seeds['seeds'])} seeds per arm", '–', "excess man-or-woman separation, twin with women "
                     f"captioned as men − balanced twin, mean over seeds: {o['gap']:+.3f}; 95% interval over seeds "
                     f"[{o['lo']:+.3f}, {o['hi']:+.3f}], over occupations and pictures [{o['data_lo']:+.3f}, {o['data_hi']:+.3f}]"
                     + (" (negative: the skewed twin lost separation, the direction the injected skew predicts; the separation is the "
                        "men's mean minus the women's, so this does not say which side moved)" if o['gap'] < 0 else ''),
                     ('found: both intervals exclude zero' if o['excludes_zero'] and o['gap'] < 0 else
                      'not found: an interval includes zero') + f" ({link('Bias', '11_bias')})"))
    return markdown_table(['', 'the paper', 'this book: MiniCLIP from `make reproduce`', 'the claim here'], rows, align='llll')


# %% [markdown]
# The check: made-up results with two tasks, skin tone above its majority class and the kind of emoji
# below it, and a prompt ensemble whose interval includes zero. Each row carries chance and the
# majority class, each verdict follows its interval, and the chapter links start with the prefix given.

# %%
fake = dict(steps=10, steps_per_epoch=5, train_items=700, parameters=8e6, train_wall_s=60.0, hardware='a test machine',
            test={'n_images': 8, 'n_texts': 8, 'i2t_R@1': 0.5, 't2i_R@1': 0.25, 'i2t_chance@1': 0.125, 't2i_chance@1': 0.125},
            zeroshot=[dict(task='emoji skin_tone', classes=5, chance=0.2, majority=0.25, ensemble_top1=0.6, zero_shot_top1=0.6,
                           prompts=dict(zero_shot=4, single=1, ensemble=6), caption_prompts=dict(zero_shot=0, single=4, ensemble=8),
                           ensembling=dict(diff=0.01, lo=-0.02, hi=0.04, excludes_zero=False),
                           vs_majority=dict(diff=0.35, lo=0.3, hi=0.4, reading='above the majority class')),
                      dict(task='emoji category', classes=11, chance=1 / 11, majority=0.63, ensemble_top1=0.16, zero_shot_top1=0.16,
                           ensembling=dict(diff=0.0, lo=-0.01, hi=0.01, excludes_zero=False),
                           vs_majority=dict(diff=-0.47, lo=-0.5, hi=-0.44, reading='below the majority class'))])
t = paper_table(fake, 128, nbs='nbs/')
assert '| retrieval R@1, image → text | 88.0%' in t and '50.0%' in t and 'majority class 25.0%' in t, t
assert 'kind of emoji 16.0% (11 classes, chance 9.1%, majority class 63.0%: below the majority class -47.0 [-50.0, -44.0] points)' in t, t
assert 'no training caption' in t and 'chance 12.5%' in t and 'majority class 25.0%' in t, t
assert 'below the majority class on kind of emoji' in t, t
assert '10 steps of 128 (2 epochs of 5 full batches: each epoch uses 640 of the 700 training emoji and leaves out the last 60' in t, t
assert '1.8 passes' in t, t                                                      # 10 × 128 / 700 = 1.83: fewer than the epochs
assert '+1.0 [-2.0, +4.0] points' in t and 'no gain shown' in t and '(nbs/07a_tasks.ipynb)' in t and '(nbs/06a_run.ipynb)' in t, t
assert "on skin tone the first template fills to training captions" in t and '(nbs/09_prompt_engineering.ipynb)' in t, t
near = near_captions(fake['zeroshot'][0])              # the book's skin-tone templates: counted against the training captions
assert near[1] == 20 and f"skin tone {near[0]} of 20" in t, (near, t)
assert near_captions(fake['zeroshot'][1]) is None      # no template count in the results: nothing said
d = lambda g, lo, hi: dict(gap=g, lo=lo, hi=hi)
test_eq(bias_summary(dict(paired=d(-0.21951, -0.50846, -0.0021), balanced=dict(excess=d(-0.0578, -0.3606, 0.2953)), summary='x')),
        "one seed: excess man-or-woman separation of the twin whose women were captioned as men, minus this run's: "
        "-0.220 [-0.508, -0.002] (paired bootstrap; excludes 0); this balanced run's own excess -0.058 [-0.361, +0.295] (includes 0)")
test_eq(bias_summary(dict(summary='as stored')), 'as stored')

# %% [markdown]
# ## The README's block
#
# `update_readme` (`make readme`) rewrites what lies between `README_BEGIN` and `README_END` in the
# README: a line naming the machine the run was measured on, the training wall time and the number of
# held-out emoji, then the table, its chapter links prefixed with `nbs/` since the README sits at the
# top of the repository. A file without exactly one of each marker is refused, naming the file, rather
# than written half. Run it after `make reproduce` and the bias chapter.

# %%
#| exports
README_BEGIN, README_END = '<!-- results: written by `make readme` from runs/ -->', '<!-- /results -->'

def update_readme(readme: str | os.PathLike = 'README.md', runs: str | os.PathLike | None = None) -> str:
    "Rewrite the block of `readme` between README_BEGIN and README_END from the runs of `make reproduce` (and the bias chapter's seeds)."
    from clip_annotated.run import load_run, runs_dir
    runs, readme = Path(runs or runs_dir()), Path(readme)
    res = json.loads((runs / 'mini' / 'results.json').read_text())
    seeds = json.loads((runs / 'bias-seeds.json').read_text()) if (runs / 'bias-seeds.json').exists() else None
    text = readme.read_text()
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1:
        raise ValueError(f"{readme}: expected one {README_BEGIN} line and one {README_END} line around the results")
    block = (f"Measured on {res.get('hardware', 'a machine not recorded')}: {res['train_wall_s']:.0f} s training the main run; retrieval on the {res['test']['n_images']:,} held-out emoji, all captions at once; each zero-shot task on the held-out emoji it applies to (counted in the zero-shot chapter).\n\n"
             + paper_table(res, load_run(runs / 'mini')[1].batch_size, seeds, nbs='nbs/'))
    head, rest = text.split(README_BEGIN); _, tail = rest.split(README_END)
    readme.write_text(head + README_BEGIN + '\n' + block + README_END + tail)
    return block


# %% [markdown]
# The check, in a scratch folder: a `runs/mini` holding the made-up `results.json` above and a
# checkpoint of the `mini-cpu` preset (its batch size goes into the training row), and a README with
# text around the markers. The block is replaced and the text around it kept; a file without the
# markers is refused.
# <!-- tests/test_readings.py checks the README's committed block the same way as the chapters' outputs:
# every accuracy beside its majority-class baseline, all three emoji tasks present. -->

# %%
readme_dir = scratch_dir(); (readme_dir / 'mini').mkdir()
(readme_dir / 'mini' / 'results.json').write_text(json.dumps(fake))
torch.save(dict(config=asdict(PRESETS['mini-cpu']), model_config=asdict(PRESETS['mini-cpu'].clip_config()),
                model=create_model(PRESETS['mini-cpu'].clip_config()).state_dict(), data=dict(step=0), wall_s=0.0),
           readme_dir / 'mini' / 'checkpoint.pt')
(readme_dir / 'README.md').write_text(f"# x\n{README_BEGIN}\nold\n{README_END}\nafter\n")
update_readme(readme_dir / 'README.md', readme_dir)
r = (readme_dir / 'README.md').read_text()
assert r.startswith('# x\n') and r.endswith(f'{README_END}\nafter\n') and 'old' not in r and 'a test machine' in r, r
test_fail(lambda: update_readme(readme_dir / 'mini' / 'results.json', readme_dir), contains='expected one')

# %%
#| echo: false
_ = remove_scratch()
_ = footer()
