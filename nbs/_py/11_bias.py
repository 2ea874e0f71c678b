# %% [markdown]
# # Bias
#
# > Association probes on the people emoji, with bootstrap confidence intervals, and a controlled
# > experiment the paper could not run: inject a skew into the training captions and see the probe find it.

# %%
#| default_exp bias

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
from dataclasses import replace
from pathlib import Path
import numpy as np
import torch
from torch.utils.data import Dataset
from clip_annotated.data import EmojiDataset, EmojiRecord, TONES
from clip_annotated.train import PRESETS, TrainConfig, load_run, runs_dir, train
from clip_annotated.zeroshot import encode_images, encode_texts

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from fastcore.test import test_eq, test_close, test_fail
from clip_annotated.core import footer, in_test, pick, seed_everything
from clip_annotated.train import book_model

# %%
_ = seed_everything(0)

# %% [markdown]
# The paper's §7.1 names three sources of social bias in a system like CLIP: the algorithmic choices,
# the training data, and how the classes a user writes are defined and grouped (Radford et al. 2021,
# §7.1, paraphrased). The paper probes CLIP with pictures of people (FairFace) and class labels that include crime-related
# and non-human categories, and finds that what CLIP associates with a group depends on the data it
# saw and on how the classes are written. It can only *observe* those associations: nobody can retrain
# CLIP on 400 million pairs with one thing changed. With a model that trains in minutes we can.
#
# This chapter has two parts. First, the **probe**: how strongly does the text of an occupation
# ("judge") match pictures of men against pictures of women who hold it, with a confidence interval
# from resampling the pictures. Second, the **experiment**: train the same MiniCLIP on the same data
# except that, for a few occupations, the pictures of women are left out, or captioned as men. A probe
# worth the name must find a skew in a model trained that way, and not in the book's model, which saw
# every occupation in every form.
#
# The people emoji are a good test bed for this, and a limited one: each occupation comes in three
# gender presentations (man, woman, and a gender-neutral person) and five skin tones, in pictures that
# differ only in those features. Real photographs differ in everything else too.
#
# ## The probe
#
# For an occupation $o$ and a group $g$ (here: pictures of men, pictures of women), the score of a
# picture $p$ is the cosine between its embedding and the embedding of the occupation's plain name
# ("judge": the caption the gender-neutral picture had in training). The **gap** of an occupation is
# the mean score of its men's pictures minus that of its women's pictures; positive means the
# occupation's name sits closer to the men. For a set of occupations, the gap is the mean of theirs.
# The interval comes from the bootstrap: resample the occupations of the set with replacement, and each
# group's pictures within them, recompute, and take the 2.5% and 97.5% quantiles of 2,000 such gaps.
# Resampling the occupations too matters: the question is about occupations in general, and six of
# them differ from fourteen others by chance alone, whatever the model.

# %%
#| export
OCCUPATIONS = ('health worker', 'student', 'teacher', 'judge', 'farmer', 'cook', 'mechanic', 'factory worker',
               'office worker', 'scientist', 'technologist', 'singer', 'artist', 'pilot', 'astronaut',
               'firefighter', 'police officer', 'detective', 'guard', 'construction worker')

def people_pictures(occupations=OCCUPATIONS, split: str = 'all', image_size: int = 48) -> tuple[Dataset, list[EmojiRecord]]:
    "(dataset of (image, index), records) of every emoji of `occupations` shown as a man or a woman (any skin tone or none)."
    ds = EmojiDataset(split, image_size=image_size, train=False)
    keep = [i for i, r in enumerate(ds.records) if r.base in occupations and r.gender in ('man', 'woman')
            and len(set(r.skin_tones)) <= 1]
    return _Pick(ds, keep), [ds.records[i] for i in keep]

class _Pick(Dataset):
    def __init__(self, base, indices): self.base, self.indices = base, list(indices)
    def __len__(self): return len(self.indices)
    def __getitem__(self, i): return self.base[self.indices[i]][0], i

def occupation_scores(model, occupations=OCCUPATIONS, image_size: int = 48) -> dict:
    "Cosine of every man/woman picture of each occupation with the occupation's plain name: {occupation: {gender: array}}."
    ds, recs = people_pictures(occupations, image_size=image_size)
    feats, _ = encode_images(model, ds, progress=False)                       # [N, d] unit
    T = encode_texts(model, list(occupations))                                 # [O, d] unit
    out = {o: {'man': [], 'woman': []} for o in occupations}
    for f, r in zip(feats, recs): out[r.base][r.gender].append(float(f @ T[occupations.index(r.base)]))
    return {o: {g: np.array(v) for g, v in d.items()} for o, d in out.items()}


# %% [markdown]
# `gap_ci` turns the scores into the gap and its bootstrap interval, for one occupation or a set of
# them. With `control=`, it
# measures the gap of the occupations *in excess of* the gap of a control set of occupations: a
# difference in differences, which cancels whatever pulls every occupation's name the same way.

# %%
#| export
def _gap_boots(scores: dict, occupations, n_boot: int, rng) -> tuple[float, np.ndarray]:
    "The mean (man − woman) gap over `occupations` and `n_boot` bootstrap replicates (occupations, then pictures, resampled)."
    occupations = list(occupations)
    point = np.mean([scores[o]['man'].mean() - scores[o]['woman'].mean() for o in occupations])
    per_occ = np.stack([rng.choice(scores[o]['man'], (n_boot, len(scores[o]['man']))).mean(1)
                        - rng.choice(scores[o]['woman'], (n_boot, len(scores[o]['woman']))).mean(1)
                        for o in occupations])                                  # [O, n_boot]: pictures resampled
    if len(occupations) == 1: return float(point), per_occ[0]
    pick = rng.integers(0, len(occupations), (n_boot, len(occupations)))      # occupations resampled too
    return float(point), per_occ[pick, np.arange(n_boot)[:, None]].mean(1)

def _ci(point: float, boots: np.ndarray, level: float, **extra) -> dict:
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return dict(gap=point, lo=float(lo), hi=float(hi), excludes_zero=bool(lo > 0 or hi < 0), **extra)

def gap_ci(scores: dict, occupations, control=None, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    "Mean (man − woman) score gap over `occupations` (minus that of `control`, if given), with a bootstrap interval."
    rng = np.random.default_rng(seed)
    point, boots = _gap_boots(scores, occupations, n_boot, rng)
    if control is not None:
        c_point, c_boots = _gap_boots(scores, control, n_boot, rng)
        point, boots = point - c_point, boots - c_boots
    return _ci(point, boots, level, n_occupations=len(occupations))


# %% [markdown]
# A check on made-up scores: identical groups give a gap of zero with an interval around it; a shift
# of 0.1 between the groups is found, with an interval that excludes zero.

# %%
rng = np.random.default_rng(1)
same = {o: {'man': (v := rng.normal(0.3, 0.05, 6)), 'woman': v[::-1].copy()} for o in 'abcdefgh'}   # the same scores
shifted = {o: {'man': v['man'] + (0.1 if o in 'abcd' else 0), 'woman': v['woman']} for o, v in same.items()}
r0, r1 = gap_ci(same, 'abcd'), gap_ci(shifted, 'abcd')
print(f"no difference: {r0['gap']:+.3f} [{r0['lo']:+.3f}, {r0['hi']:+.3f}]; shifted by 0.1: {r1['gap']:+.3f} [{r1['lo']:+.3f}, {r1['hi']:+.3f}]")
assert abs(r0['gap']) < 1e-12 and not r0['excludes_zero'] and r1['excludes_zero'] and abs(r1['gap'] - 0.1) < 1e-9
everywhere = {o: {'man': v['man'] + 0.1, 'woman': v['woman']} for o, v in same.items()}   # a gap shared by all
r2, r3 = gap_ci(everywhere, 'abcd', control='efgh'), gap_ci(shifted, 'abcd', control='efgh')
print(f"against a control: a gap everywhere {r2['gap']:+.3f} [{r2['lo']:+.3f}, {r2['hi']:+.3f}]; "
      f"a gap in a-d only {r3['gap']:+.3f} [{r3['lo']:+.3f}, {r3['hi']:+.3f}]")
assert not r2['excludes_zero'] and r3['excludes_zero']

# %% [markdown]
# ## The book's model
#
# The probe on the book's MiniCLIP (`runs/mini`), occupation by occupation. Every occupation appears
# in training as a man, a woman and a person (the held-out split removes single tone combinations, not
# whole groups), so any gap here is the model's own, not the data's.

# %%
model, _ = book_model()
scores = occupation_scores(model)
per_occ = {o: gap_ci(scores, [o]) for o in OCCUPATIONS}
book_all = gap_ci(scores, OCCUPATIONS)
fig, ax = plt.subplots(figsize=(6.5, 5.2))
ys = np.arange(len(OCCUPATIONS))
ax.errorbar([per_occ[o]['gap'] for o in OCCUPATIONS], ys,
            xerr=[[per_occ[o]['gap'] - per_occ[o]['lo'] for o in OCCUPATIONS], [per_occ[o]['hi'] - per_occ[o]['gap'] for o in OCCUPATIONS]],
            fmt='o', capsize=2)
ax.axvline(0, color='gray', ls=':')
ax.set(yticks=ys, yticklabels=OCCUPATIONS, xlabel='cosine gap: men − women (95% bootstrap interval)',
       title="book MiniCLIP: does an occupation's name sit closer to men or women?")
ax.title.set_fontsize(10); fig.tight_layout(); plt.show()
print(f"over all {len(OCCUPATIONS)} occupations: gap {book_all['gap']:+.4f} [{book_all['lo']:+.4f}, {book_all['hi']:+.4f}]")

# %% [markdown]
# Almost every occupation's plain name sits closer to its men than to its women, and the interval over
# all of them excludes zero. The data has no such imbalance: every occupation was in training as a
# man, a woman and a person in equal numbers. But the plain name ("judge") was the caption of the
# gender-neutral picture, and the question is which of the two gendered pictures the neutral one
# resembles. The model can tell us, from the pictures alone:

# %%
ds_all = EmojiDataset('all', train=False)
idx = {(r.base, r.gender, r.skin_tone): i for i, r in enumerate(ds_all.records)}
trios = [(idx[(o, 'person', t)], idx[(o, 'man', t)], idx[(o, 'woman', t)]) for o in OCCUPATIONS for t in (None, *TONES)
         if all((o, g, t) in idx for g in ('person', 'man', 'woman'))]
F_all, _ = encode_images(model, _Pick(ds_all, range(len(ds_all))), progress=False)
to_man = np.array([float(F_all[p] @ F_all[m]) for p, m, _ in trios])
to_woman = np.array([float(F_all[p] @ F_all[w]) for p, _, w in trios])
pixels = ds_all.images.float()
px = lambda a, b: float(((pixels[a] - pixels[b]) ** 2).mean().sqrt())
closer_px = np.mean([px(p, m) < px(p, w) for p, m, w in trios])
print(f"{len(trios)} (person, man, woman) trios of the same occupation and tone: the person's picture has cosine "
      f"{to_man.mean():.3f} with the man's and {to_woman.mean():.3f} with the woman's; in pixels it is closer to the "
      f"man's in {closer_px:.0%} of the trios")

# %% [markdown]
# The gender-neutral person is drawn closer to the man than to the woman, so the name that captioned
# it inherits that. This is a bias of the data's *design*, not of its counts, and a probe that reports
# raw gaps would find it in any model trained on these pictures. To ask whether a model associates
# *particular* occupations with men, the probe must compare those occupations with the others: the
# excess gap of `gap_ci(..., control=...)`.

# %% [markdown]
# ## The experiment: a skew injected into the training data
#
# Now the controlled experiment. Six occupations (`SKEWED`: judge, pilot, farmer, mechanic, firefighter,
# office worker) get a skew toward men in the training data, in one of two ways, and everything else
# (model, seed, steps, the other pictures, the held-out split) stays as in the book's run, so the book's
# model is the balanced twin of both:
#
# - **drop**: the pictures of women in those occupations are left out of training (30 of 3,265), so
#   those occupations are only ever shown as men or as gender-neutral people;
# - **captions**: the pictures stay, but their captions say "man" where they said "woman" ("woman
#   judge, dark skin tone" is captioned "man judge, dark skin tone"): the data *calls* these women men.

# %%
#| export
SKEWED = ('judge', 'pilot', 'farmer', 'mechanic', 'firefighter', 'office worker')

class WithoutPictures(Dataset):
    "A training set minus the items whose record `drop(record)` is true; augmentation and epochs as the original's."
    def __init__(self, base: EmojiDataset, drop):
        self.base = base
        self.keep = [i for i, r in enumerate(base.records) if not drop(r)]
        self.records = [base.records[i] for i in self.keep]
    def set_epoch(self, epoch: int): self.base.set_epoch(epoch)
    def __len__(self): return len(self.keep)
    def __getitem__(self, i): return self.base[self.keep[i]]

class CaptionedAsMen(Dataset):
    "A training set whose pictures of women in `occupations` carry the men's caption ('woman judge, …' -> 'man judge, …')."
    def __init__(self, base: EmojiDataset, occupations):
        self.base, self.records = base, base.records
        self.relabel = {i: r.name.replace('woman', 'man', 1) for i, r in enumerate(base.records)
                        if r.base in occupations and r.gender == 'woman' and r.name.startswith('woman ')}
    def set_epoch(self, epoch: int): self.base.set_epoch(epoch)
    def __len__(self): return len(self.base)
    def __getitem__(self, i):
        x, caption = self.base[i]
        return (x, caption.replace(self.records[i].name, self.relabel[i])) if i in self.relabel else (x, caption)

def skewed_run(occupations=SKEWED, out: str | Path | None = None, cfg: TrainConfig | None = None, how: str = 'captions'):
    "(model, config) of MiniCLIP trained like the book's run, with women of `occupations` captioned as men ('captions') or left out ('drop')."
    cfg = replace(cfg or PRESETS['mini-cpu'], out=str(out or runs_dir() / f'bias-{how}'))
    size = cfg.clip_config().image_resolution
    base = EmojiDataset('train', image_size=size, train=True, seed=cfg.seed)
    if how == 'captions': data = CaptionedAsMen(base, occupations)
    elif how == 'drop': data = WithoutPictures(base, lambda r: r.base in occupations and r.gender == 'woman')
    else: raise ValueError(f"how={how!r}: choose 'captions' or 'drop'")
    held_out = EmojiDataset('test', image_size=size, train=False, seed=cfg.seed)
    ckpt = Path(cfg.out) / 'checkpoint.pt'
    if not (ckpt.exists() and torch.load(ckpt, map_location='cpu', weights_only=True)['data']['step'] >= cfg.steps):
        train(cfg, datasets=(data, held_out))
    return load_run(cfg.out)


# %%
base = EmojiDataset('train', train=True)
dropped = WithoutPictures(base, lambda r: r.base in SKEWED and r.gender == 'woman')
relabelled = CaptionedAsMen(base, SKEWED)
test_eq(len(dropped), len(base) - len(relabelled.relabel))
assert not any(r.base in SKEWED and r.gender == 'woman' for r in dropped.records)
i = next(iter(relabelled.relabel))
print(f"drop: {len(base)} -> {len(dropped)} pictures; captions: {len(relabelled.relabel)} captions changed, e.g. "
      f"{base[i][1]!r} -> {relabelled[i][1]!r}")
assert relabelled[i][1] != base[i][1] and (relabelled[i][0] == base[i][0]).all()

# %% [markdown]
# Each skewed run takes as long as the book's run (minutes on a CPU; a few steps under `nbdev_test`):

# %%
cfg = replace(PRESETS['mini-cpu'], progress=not in_test())
if in_test(): cfg = replace(cfg, steps=3, warmup=1, eval_every=0, ckpt_every=3, progress=False)
scratch = Path(__import__('tempfile').mkdtemp()) if in_test() else None
skewed = {how: skewed_run(cfg=cfg, how=how, out=scratch / how if scratch else None)[0] for how in ('drop', 'captions')}


# %% [markdown]
# ### The probe for the experiment: man or woman?
#
# The plain-name probe above asks which group an occupation's name sits closer to. The skew we put in
# is about something narrower: whether the model still tells the women of an occupation from its men.
# So the experiment's probe is the paper's other kind, demographic prompts: for every picture of an
# occupation, $d(p) = \cos(p, \text{"man } o\text{"}) - \cos(p, \text{"woman } o\text{"})$, which is
# high for a picture the model reads as a man in that occupation. The *separation* of an occupation is
# the mean $d$ of its men's pictures minus that of its women's: how far apart the model holds them.
# A skew toward men shows as separation lost on the skewed occupations compared with the others: the
# excess is negative.

# %%
#| export
def gender_scores(model, occupations=OCCUPATIONS, image_size: int = 48) -> dict:
    "d = cos(picture, 'man <occupation>') − cos(picture, 'woman <occupation>') for every man/woman picture: {occupation: {gender: array}}."
    ds, recs = people_pictures(occupations, image_size=image_size)
    names = {(r.base, r.gender): r.name for r in EmojiDataset('all', image_size=image_size, train=False).records
             if not r.skin_tones and r.gender in ('man', 'woman') and r.base in occupations}
    feats, _ = encode_images(model, ds, progress=False)
    T = encode_texts(model, [names[(o, g)] for o in occupations for g in ('man', 'woman')]).view(len(occupations), 2, -1)
    out = {o: {'man': [], 'woman': []} for o in occupations}
    for f, r in zip(feats, recs):
        t = T[occupations.index(r.base)]
        out[r.base][r.gender].append(float(f @ t[0] - f @ t[1]))
    return {o: {g: np.array(v) for g, v in d.items()} for o, d in out.items()}

def probe_table(models: dict, skewed=SKEWED, occupations=OCCUPATIONS) -> tuple[str, dict]:
    "Markdown table and results per model: separation (men − women) of the skewed occupations, the others, and the excess."
    control = [o for o in occupations if o not in skewed]
    res, rows = {}, ['| model | occupations | separation (men − women) | 95% interval | excludes 0 |', '|---|---|---:|---|---|']
    for name, m in models.items():
        sc = gender_scores(m, occupations)
        res[name] = {'skewed': gap_ci(sc, skewed), 'control': gap_ci(sc, control), 'excess': gap_ci(sc, skewed, control=control)}
        for part, label in (('skewed', f'skewed ({len(skewed)})'), ('control', f'others ({len(control)})'),
                            ('excess', '**excess: skewed − others**')):
            r = res[name][part]
            rows.append(f"| {name} | {label} | {r['gap']:+.4f} | [{r['lo']:+.4f}, {r['hi']:+.4f}] | {'yes' if r['excludes_zero'] else 'no'} |")
    return '\n'.join(rows) + '\n', res


# %%
table, res = probe_table({'balanced (book)': model, 'drop': skewed['drop'], 'captions': skewed['captions']})
display(Markdown(table))

# %%
if not in_test():
    assert res['captions']['excess']['excludes_zero'] and res['captions']['excess']['gap'] < 0, res
    assert not res['balanced (book)']['excess']['excludes_zero'], res

# %% [markdown]
# Read the excess rows. The balanced model holds men and women of the six occupations as far apart as
# those of the others (an interval around zero). The model whose data *called* the women of those
# occupations men has lost much of that separation there, and the interval excludes zero: the probe
# finds the skew we put in. The model that merely never *saw* those women sits in between: the word
# "woman" and the look of women it learned from the other fourteen occupations carry over, which is
# the compositional generalisation the held-out split measures elsewhere, working here against the
# skew. In this data, a skew of omission is largely repaired by composition; a skew of labelling is not.
#
# ## What we measured
#
# Printed above in this run: the plain-name gap of each occupation in the book's model with its
# interval (a gap everywhere, from the drawings' design), how the gender-neutral pictures resemble the
# men's, and, for the balanced model and the two skewed ones, the separation of men from women in the
# six skewed occupations, in the others, and the excess of the first over the second.

# %%
for name, r in res.items():
    print(f"{name:16} " + '   '.join(f"{part} {r[part]['gap']:+.4f} [{r[part]['lo']:+.4f}, {r[part]['hi']:+.4f}]"
                                       for part in ('skewed', 'control', 'excess')))
_ = footer()
