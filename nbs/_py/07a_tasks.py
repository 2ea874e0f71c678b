# %% [markdown]
# # Zero-shot on the book's tasks
#
# > The classifier of the zero-shot chapter on the book's own model: held-out emoji (skin tone, gender presentation, kind of emoji) and procedural scenes (colour, shape, count), prompted only with templates that are no training caption, with chance and the majority-class baseline beside every accuracy.

# %%
#| default_exp tasks

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import re
import functools
from dataclasses import dataclass, field
import torch
from torch.utils.data import Dataset
from clip_annotated.core import markdown_table
from clip_annotated.data import CATEGORIES, DEFAULT_TEMPLATES, TONES, EmojiDataset
from clip_annotated.scenes import COLORS, NUMBERS, SHAPES, SceneDataset, SceneObject
from clip_annotated.zeroshot import (against_majority, baseline, classification_metrics, encode_images, encode_texts,
                                     fill_template, paired_bootstrap, zero_shot_classifier, zero_shot_logits)

# %%
#| hide
from PIL import Image
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from fastcore.test import test_eq, test_close, test_fail
from clip_annotated.core import footer, in_test, no_headings, seed_everything
from clip_annotated.run import book_model
from clip_annotated.pretrained import image_transform
from clip_annotated.zeroshot import predict

# %%
_ = seed_everything(0)


# %% [markdown]
# At the end of this chapter you know how well zero-shot classification works on the book's model, and
# where it fails: [Zero-shot classification](07_zeroshot.ipynb) built the classifier (class names
# written as prompts, one unit text embedding per class, a template ensemble averaged in embedding
# space) and its measurements; here they meet pictures the model never saw.
#
# ## The embedded tasks
#
# The held-out emoji of the data chapter carry attributes read from their Unicode names: a skin tone
# (five), a gender presentation (man, woman, or a gender-neutral person), and a coarse kind (face,
# animal, flag, ...). None of these pictures was seen in training, and the split holds out unseen
# *combinations* (an occupation with a tone it never appeared with), so a right answer cannot be a
# memorised picture. A `Task` bundles a dataset of (image, label) pairs with class names, templates
# and its chance level; `Labelled` makes such a dataset from chosen pictures of a caption dataset (the
# later chapters use it whenever they encode a selection of pictures).
#
# The paper writes its prompts in the language of its captions ("a photo of a {}." for alt-text); the
# [prompt chapter](09_prompt_engineering.ipynb) measures how much the wording matters on our model. Our
# training captions are emoji names in six templates ("woman health worker, dark skin tone", "an emoji
# of dog."), so the skin-tone prompts say "{} skin tone" after a person, and the category prompts name
# the kind of emoji. Each task has a *single* template, the first of its list, and an ensemble, the
# whole list. Written that close to the captions, some prompts *are* training captions ("an emoji of
# man." is one): those are not zero-shot, and the section after the scenes sorts them out.

# %%
#| exports
@dataclass
class Task:
    "A zero-shot task: (image, label) pairs, class names, prompt templates (the first is the single template)."
    name: str
    dataset: Dataset
    classnames: list[str]
    templates: list
    labels: list[str] = field(default_factory=list)    # short label names for tables (default: classnames)
    caption_templates: list = field(default_factory=list)   # prompts in the training captions' own form (optional)
    unseen_caption_templates: list = field(default_factory=list)   # those of them no held-out caption is written in
    captions: list = field(default_factory=list)   # per picture, the set of its own held-out captions (optional)
    trained_on: str = ''       # 'emoji' or 'scenes': whose training captions `training_caption_set` checks the prompts against
    new_templates: list = field(default_factory=list)   # zero-shot templates for when every template fills to a training caption

    @property
    def chance(self) -> float: return 1 / len(self.classnames)

class Labelled(Dataset):
    "(picture, label) items: the pictures of a caption dataset at `indices`, each with its label (default: its position)."
    def __init__(self, base, indices, labels=None):
        self.base, self.indices = base, list(indices)
        self.labels = list(range(len(self.indices))) if labels is None else list(labels)
    def __len__(self): return len(self.indices)
    def __getitem__(self, i): return self.base[self.indices[i]][0], self.labels[i]

CATEGORY_NAMES = {'face': 'face', 'person': 'person', 'body': 'hand or body part', 'animal': 'animal',
                  'plant': 'plant or flower', 'food': 'food or drink', 'place': 'place or building',
                  'activity': 'sport or activity', 'object': 'object', 'symbol': 'symbol or sign', 'flag': 'flag'}

EMOJI_TEMPLATES = {
    'skin_tone': ['person, {} skin tone', 'a person, {} skin tone.', 'an emoji of person, {} skin tone.',
                  'a picture of a person with {} skin tone.', 'hand, {} skin tone', '{} skin tone'],
    'gender':    ['{}', 'an emoji of {}.', 'a picture of a {}.', 'a {}.', '{} emoji', 'an icon of a {}.'],
    'category':  ['an emoji of a {}.', '{}', 'a picture of a {}.', '{} emoji', 'an icon of a {}.', 'a drawing of a {}.'],
}

def emoji_task(attribute: str, split: str = 'test', image_size: int = 48) -> Task:
    "The zero-shot task on `split`'s emoji for 'skin_tone' (5 classes), 'gender' (man/woman/person) or 'category'."
    ds = EmojiDataset(split, image_size=image_size, train=False)
    recs = ds.records
    if attribute == 'skin_tone':
        names, keep = list(TONES), [i for i, r in enumerate(recs) if r.skin_tone and len(set(r.skin_tones)) == 1]
        label = lambda r: TONES.index(r.skin_tone)
    elif attribute == 'gender':
        names, keep = ['man', 'woman', 'person'], [i for i, r in enumerate(recs) if r.gender]
        label = lambda r: ('man', 'woman', 'person').index(r.gender)
    elif attribute == 'category':
        present = [c for c in CATEGORIES if any(r.category == c for r in recs)]
        names, keep = [CATEGORY_NAMES[c] for c in present], list(range(len(recs)))
        label = lambda r: present.index(r.category)
    else: raise ValueError(f"emoji attribute {attribute!r}: choose 'skin_tone', 'gender' or 'category'")
    forms = caption_templates(attribute, image_size)
    held_out = {_TONE_PHRASE.sub('{} skin tone', r.name) for r in EmojiDataset('test', image_size=image_size, train=False).records}
    return Task(f'emoji {attribute}', Labelled(ds, keep, [label(recs[i]) for i in keep]), names,
                EMOJI_TEMPLATES[attribute], labels=list(TONES) if attribute == 'skin_tone' else names,
                caption_templates=forms,
                unseen_caption_templates=[f for f in forms if attribute == 'skin_tone' and f not in held_out],
                captions=[{fill_template(t, recs[i].name) for t in DEFAULT_TEMPLATES} for i in keep], trained_on='emoji')

_TONE_PHRASE = re.compile(r'\b(light|medium-light|medium|medium-dark|dark) skin tone\b')

def _by_gender(forms: dict[str, str]):
    return lambda g: forms[g]

def caption_templates(attribute: str, image_size: int = 48) -> list:
    "Prompts written the way the *training* captions are, one per training emoji name, with the attribute left open."
    recs = EmojiDataset('train', image_size=image_size, train=False).records
    if attribute == 'skin_tone':       # 'woman health worker, dark skin tone' -> 'woman health worker, {} skin tone'
        return sorted({_TONE_PHRASE.sub('{} skin tone', r.name) for r in recs if r.skin_tone and len(set(r.skin_tones)) == 1})
    if attribute == 'gender':          # a base seen in all three forms: 'man judge' / 'woman judge' / 'judge'
        forms: dict[str, dict[str, str]] = {}
        for r in recs:
            if r.gender and not r.skin_tones: forms.setdefault(r.base, {})[r.gender] = r.name
        return [_by_gender(f) for b, f in sorted(forms.items()) if len(f) == 3]
    return []


# %% [markdown]
# Procedural scenes have their attributes by construction. The tasks use scenes with a single group of
# shapes, drawn from a seed that no training run uses: the colour (seven), the shape (five) and the
# count (one to four). A caption there says everything at once ("three small red circles"), so a
# prompt for the colour must also name some shape and size. Instead of guessing, the templates run
# over all of them and the ensemble averages the guesses away: the colour task's templates are
# "a small {} circle", "a large {} star", ... (ten), and for the count each template fixes a size,
# colour and shape and writes the right singular or plural (a function of the class name). Filled in,
# every one of these is a training caption ("a small red circle"); the zero-shot templates
# (`new_templates`) leave out the size, which every training caption names: "a {} circle", "a red {}",
# "two red circles".

# %%
#| exports
SCENE_SEED = 7_777_777   # held-out scenes: no training run of this book draws from this seed

def _count_template(size: str | None, color: str, shape: str):
    return lambda n: ' '.join([n, *([size] if size else []), color, f"{shape}{'' if n == 'a' else 's'}"])

def scene_task(attribute: str, n: int = 400, image_size: int = 48, seed: int = SCENE_SEED) -> Task:
    "The zero-shot task on `n` single-group held-out scenes for 'color', 'shape' or 'count'."
    ds = SceneDataset(20 * n, seed=seed, image_size=image_size, train=False)
    keep, objs = [], []
    for i in range(len(ds)):
        scene = ds.describe(i)
        if len(scene.objects) == 1: keep.append(i); objs.append(scene.objects[0])
        if len(keep) == n: break
    sizes = ('small', 'large')
    if attribute == 'color':
        names, labels = list(COLORS), [list(COLORS).index(o.color) for o in objs]
        templates = [f'a {s} {{}} {sh}' for sh in SHAPES for s in sizes]
        new = [f'a {{}} {sh}' for sh in SHAPES]                          # no size: no training caption
    elif attribute == 'shape':
        names, labels = list(SHAPES), [SHAPES.index(o.shape) for o in objs]
        templates = [f'a {s} {c} {{}}' for c in COLORS for s in sizes]
        new = [f'a {c} {{}}' for c in COLORS]
    elif attribute == 'count':
        names, labels = list(NUMBERS), [o.count - 1 for o in objs]
        templates = [_count_template(s, c, sh) for sh in SHAPES for c in COLORS for s in sizes]
        new = [_count_template(None, c, sh) for sh in SHAPES for c in COLORS]
    else: raise ValueError(f"scene attribute {attribute!r}: choose 'color', 'shape' or 'count'")
    return Task(f'scene {attribute}', Labelled(ds, keep, labels), names, templates,
                labels=['1', '2', '3', '4'] if attribute == 'count' else names, trained_on='scenes', new_templates=new)


# %%
tone = emoji_task('skin_tone')
print(tone.name, len(tone.dataset), 'pictures;', len(tone.caption_templates), 'caption-form prompts;', tone.classnames, '; first prompts:',
      [fill_template(t, tone.classnames[0]) for t in tone.templates[:2]])
test_eq(len(tone.classnames), 5); test_close(tone.chance, 0.2)
cnt = scene_task('count', n=40)
print(cnt.name, len(cnt.dataset), 'scenes; prompts for "two":', [fill_template(t, 'two') for t in cnt.templates[:2]],
      'for "a":', fill_template(cnt.templates[0], 'a'))
test_eq(len(cnt.templates), 70); test_eq(fill_template(cnt.templates[0], 'a'), 'a small red circle')
test_eq([fill_template(cnt.new_templates[0], n) for n in ('a', 'two')], ['a red circle', 'two red circles'])
test_fail(lambda: emoji_task('age'), contains="'age'")


# %% [markdown]
# ### Which prompts are training captions
#
# The paper's zero-shot classifier meets class names it was not trained to label; this book holds its
# own model to a literal version of that: a classifier is called **zero-shot** only if no prompt it fills in is, word for word, a caption of its model's
# training data. A prompt that is a training caption asks the model to recall a pairing it was trained
# on, not to transfer. `training_caption_set` gives the set of training captions a prompt is checked
# against: for the emoji model, every training name in each of the six caption templates; for the
# scenes model, every single-group caption the scene grammar can write ("a small red circle", "three
# large blue stars"), in each of the three templates the scenes are trained with (a two-group caption
# names a relation, which no task prompt does). `caption_prompts` counts a task's filled prompts that
# are in that set, and `zero_shot_templates` keeps the templates that fill to none, falling back to
# the task's `new_templates` when none is left.

# %%
#| exports
@functools.lru_cache(maxsize=None)
def training_caption_set(kind: str) -> frozenset[str]:
    "Every caption the training data of `kind` ('emoji': the training split; 'scenes': the scene grammar, one group) can show."
    if kind == 'emoji':
        return frozenset(t.format(r.name) for r in EmojiDataset('train', train=False).records for t in DEFAULT_TEMPLATES)
    if kind == 'scenes':
        phrases = {SceneObject(sh, c, s, n).phrase() for sh in SHAPES for c in COLORS for s in ('small', 'large') for n in (1, 2, 3, 4)}
        return frozenset(t.format(p) for p in phrases for t in DEFAULT_TEMPLATES[:3])   # SceneDataset's training templates
    raise ValueError(f"training captions of {kind!r}: choose 'emoji' or 'scenes'")

def caption_prompts(task: Task, templates=None) -> int:
    "How many of the prompts `templates` (default: the task's) fill in for the task's classes are training captions."
    captions = training_caption_set(task.trained_on)
    return sum(fill_template(t, c) in captions for t in (task.templates if templates is None else templates) for c in task.classnames)

def zero_shot_templates(task: Task) -> list:
    "The task's templates that fill to no training caption for any class (or, if none is left, its `new_templates`)."
    keep = [t for t in task.templates if not caption_prompts(task, [t])]
    keep = keep or task.new_templates
    if not keep or caption_prompts(task, keep):
        raise ValueError(f"{task.name}: no template fills to no training caption; give the task new_templates that do not")
    return keep


# %%
test_eq(len(training_caption_set('scenes')), 3 * len(SHAPES) * len(COLORS) * 2 * 4)
assert 'an emoji of man.' in training_caption_set('emoji') and 'a small red circle' in training_caption_set('scenes')
gender = emoji_task('gender')
print('gender:', caption_prompts(gender), 'of', len(gender.templates) * len(gender.classnames),
      'prompts are training captions; zero-shot templates:', zero_shot_templates(gender))
test_eq(caption_prompts(cnt), 280); test_eq(caption_prompts(cnt, zero_shot_templates(cnt)), 0)
test_fail(lambda: training_caption_set('photos'), contains="'photos'")


# %% [markdown]
# ### Prompts in the captions' own form, and the nearest prompt
#
# The paper's advice generalises: write the prompt the way the training text was written. For our
# model that can be taken literally. `caption_templates` turns every *training* emoji name into a
# prompt with the attribute left open: "woman health worker, {} skin tone" (one per training name of
# a person with a skin tone), or, for gender, the three forms of a name seen in training ("man judge", "woman judge",
# "judge"). No label of a test picture goes in: these are the training captions' shapes. But filled
# with every tone they also spell the held-out combinations (a health worker seen in training, a tone
# seen in training, never the two together), and those are, word for word, the *test pictures' own
# captions*. A rule that picks the closest of them is then close to caption retrieval: it finds the
# picture's own name among a few hundred candidates and reads the tone off it. The held-out split
# holds out combinations, so almost every person of the training split also appears in the test
# split with some other tone; `Task.unseen_caption_templates` keeps the caption forms of the few
# people the test split never shows, which spell no test caption (though every one of them, filled in,
# is a training caption). And `run_task` counts, for every rule, the test pictures whose own caption is
# among its prompts.
#
# Averaging all such prompts (the paper's ensemble) makes one "dark skin tone" vector out of hundreds
# of people. A second rule scores each class by its **nearest** prompt (the maximum cosine over the
# class's prompts) instead of by the average of its prompts. It is not a linear classifier any more
# (no single vector per class), and it costs one text embedding per prompt and class at test time. On
# the caption forms it is the caption retrieval above; on the caption forms of unseen people it is the
# nearest *training* caption. Neither is zero-shot: every prompt of both is a training caption.

# %%
#| exports
def nearest_prompt_logits(model, image_features: torch.Tensor, classnames: list[str], templates, device=None,
                          scale: float = 100.0) -> torch.Tensor:
    "Logits [N, C]: each class scored by its best-matching prompt (max cosine over templates), not their mean."
    texts = [fill_template(t, c) for c in classnames for t in templates]
    E = encode_texts(model, texts, device=device).view(len(classnames), len(templates), -1)      # [C, T, d]
    return scale * torch.einsum('nd,ctd->nct', image_features.float(), E).amax(dim=2)           # [N, C]


# %% [markdown]
# `run_task` evaluates a task with each rule: the zero-shot classifier (the paper's mean embedding over
# the templates of `zero_shot_templates`, this book's headline), its single template, the ensemble of
# all its templates, and, where the task has them, the caption-form prompts averaged and by nearest
# prompt, and the nearest caption form of people the test split never shows. `task_table` prints the
# results as a markdown table with the chance level, the majority-class baseline and, per rule, how
# many of its prompts are training captions and how many pictures have their own caption among them;
# `majority_table` sets the zero-shot classifier against the majority class on the same pictures, with
# a paired interval and its reading in words (`against_majority` of the zero-shot chapter).

# %%
#| exports
METHODS = {'zero_shot': 'zero-shot: templates that fill to no training caption, mean embedding',
           'single': 'single template', 'ensemble': 'all templates, mean embedding (prompted with training captions)',
           'captions_mean': 'caption-form prompts, mean embedding', 'captions_nearest': 'caption-form prompts, nearest prompt',
           'unseen_nearest': 'caption forms of people absent from the test split, nearest training caption'}
NEAREST = ('captions_nearest', 'unseen_nearest')     # the rules that score a class by its best prompt

def rule_prompts(task: Task, rule: str) -> list:
    "The templates one rule of `METHODS` fills with the class names."
    if rule == 'zero_shot': return zero_shot_templates(task)
    return {'single': task.templates[:1], 'ensemble': task.templates,
            'unseen_nearest': task.unseen_caption_templates}.get(rule, task.caption_templates)

def task_rules(task: Task) -> list[str]:
    "The rules of `METHODS` that `task` supports."
    return ['zero_shot', 'single', 'ensemble'] + (['captions_mean', 'captions_nearest'] if task.caption_templates else []) \
           + (['unseen_nearest'] if task.unseen_caption_templates else [])

def own_captions(task: Task, rule: str) -> int | None:
    "How many of the task's pictures have one of their own captions among the prompts of `rule` (None: captions unknown)."
    if not task.captions: return None
    prompts = {fill_template(t, c) for t in rule_prompts(task, rule) for c in task.classnames}
    return sum(bool(caps & prompts) for caps in task.captions)

def rule_logits(model, feats: torch.Tensor, task: Task, rule: str, device=None) -> torch.Tensor:
    "Logits [N, C] of unit image features under one rule of `METHODS`."
    temps = rule_prompts(task, rule)
    if rule in NEAREST: return nearest_prompt_logits(model, feats, task.classnames, temps, device)
    return zero_shot_logits(feats, zero_shot_classifier(model, task.classnames, temps, device=device))

def run_task(model, task: Task, device=None, progress: bool | None = None) -> dict:
    "Top-1 and mean per-class recall of `task` for each rule of `METHODS` the task supports, against the majority class."
    feats, labels = encode_images(model, task.dataset, device=device, progress=progress)
    counts = torch.bincount(labels, minlength=len(task.classnames))
    out = dict(task=task.name, n=len(labels), classes=len(task.classnames), chance=task.chance,
               majority=counts.max().item() / len(labels),                        # always the most frequent class
               majority_class=task.classnames[int(counts.argmax())], prompts={}, own_captions={}, caption_prompts={})
    hits = {}
    for rule in task_rules(task):
        logits = rule_logits(model, feats, task, rule, device)
        m = classification_metrics(logits, labels, ks=(1,))
        out[f'{rule}_top1'], out[f'{rule}_recall'] = m['top1'], m['mean_per_class_recall']
        out['prompts'][rule], out['own_captions'][rule] = len(rule_prompts(task, rule)), own_captions(task, rule)
        out['caption_prompts'][rule] = caption_prompts(task, rule_prompts(task, rule))   # of prompts[rule] × classes
        hits[rule] = (logits.argmax(1) == labels).numpy()
    out['ensembling'] = paired_bootstrap(hits['ensemble'], hits['single'])     # ensemble − single, same pictures
    out['vs_majority'] = against_majority(hits['zero_shot'], labels)           # zero-shot − majority class, same pictures
    out['vs_chance'] = paired_bootstrap(hits['zero_shot'], [task.chance] * len(labels))   # zero-shot − chance
    out['zero_shot_vs_ensemble'] = paired_bootstrap(hits['zero_shot'], hits['ensemble'])
    return out

def training_caption_note(r: dict, rule: str) -> str:
    "'k of n': how many of the prompts one rule of a `run_task` result fills in are training captions."
    k = r.get('caption_prompts', {}).get(rule)
    return '–' if k is None else f"{k} of {r['prompts'][rule] * r['classes']}"

def task_table(results: list[dict]) -> str:
    "Markdown table of `run_task` results (percentages), one row per task and rule."
    pct = lambda x: f'{100 * x:.1f}%'
    own = lambda r, k: '–' if r.get('own_captions', {}).get(k) is None else f"{r['own_captions'][k]} of {r['n']}"
    return markdown_table(['task', 'pictures', 'chance', 'majority class', 'rule', 'prompts per class',
                           'prompts that are training captions', "pictures whose own caption is a prompt", 'top-1',
                           'mean per-class recall'],
                          [(r['task'], r['n'], pct(r['chance']), pct(r['majority']), METHODS[kind], n_prompts,
                            training_caption_note(r, kind), own(r, kind), pct(r[f'{kind}_top1']), pct(r[f'{kind}_recall']))
                           for r in results for kind, n_prompts in r['prompts'].items()], align='lrrrlrrrrr')

def majority_table(results: list[dict]) -> str:
    "Markdown table of the zero-shot classifier against chance and the majority class, with the paired 95% interval and its reading."
    pct, pts = (lambda x: f'{100 * x:.1f}%'), (lambda x: f'{100 * x:+.1f}')
    return markdown_table(['task', 'pictures', 'chance', 'majority class (always answering)', 'zero-shot templates',
                           'prompts that are training captions', 'zero-shot top-1', 'zero-shot − majority (points)',
                           '95% interval', 'reading'],
                          [(r['task'], r['n'], pct(r['chance']), f"{pct(r['majority'])} ({r['majority_class']!r})",
                            r['prompts']['zero_shot'], training_caption_note(r, 'zero_shot'),
                            pct(r['zero_shot_top1']), pts(r['vs_majority']['diff']),
                            f"[{pts(r['vs_majority']['lo'])}, {pts(r['vs_majority']['hi'])}]", r['vs_majority']['reading'])
                           for r in results], align='lrrrrrrrrl')

def ensembling_table(results: list[dict]) -> str:
    "Markdown table of what ensembling changes on each task: all templates − the first, with its paired 95% interval (training-caption prompts counted)."
    pts = lambda x: f'{100 * x:+.1f}'
    return markdown_table(['task', 'pictures', 'chance', 'majority class', 'prompts that are training captions',
                           'single template', 'all templates (ensemble)',
                           'difference (points)', '95% interval', 'pictures net'],
                          [(r['task'], r['n'], f"{100 * r['chance']:.1f}%", f"{100 * r['majority']:.1f}%",
                            f"single {training_caption_note(r, 'single')}, all {training_caption_note(r, 'ensemble')}",
                            f"{100 * r['single_top1']:.1f}%", f"{100 * r['ensemble_top1']:.1f}%",
                            pts(r['ensembling']['diff']), f"[{pts(r['ensembling']['lo'])}, {pts(r['ensembling']['hi'])}]",
                            f"{round(r['ensembling']['diff'] * r['n']):+d}") for r in results])


# %% [markdown]
# `make reproduce` adds the same measurement to its report: `zero_shot_section` runs the three emoji
# tasks on a model and returns the report's markdown with the results.

# %%
#| exports
def zero_shot_section(model, device=None) -> tuple[str, list[dict]]:
    "(markdown section, results) of the held-out emoji tasks for a training report: the zero-shot classifier against chance and the majority class, every rule."
    n_px = model.visual.input_resolution
    results = [run_task(model, emoji_task(a, image_size=n_px), device=device, progress=False)
               for a in ('skin_tone', 'gender', 'category')]
    text = ("## Zero-shot classification of held-out emoji\n\n"
            "No training: the classes are written as prompts and encoded by the text tower (`clip_annotated.zeroshot`, tasks in `clip_annotated.tasks`). "
            "The headline is the paper's zero-shot classifier (the mean embedding of each class's prompts) built only from "
            "the task's templates that fill to no training caption: 'zero-shot' here means that no prompt is, word for word, "
            "a caption the model was trained on. Chance is one over the number of classes; 'majority class' is the accuracy "
            "of always answering the most frequent class, the bar a classifier must clear; the interval is a paired "
            "bootstrap over the pictures (2,000 resamples).\n\n" + majority_table(results) +
            "\nEvery rule, with how many of its filled prompts are training captions (a rule with any is not zero-shot): "
            "'single template' uses the first prompt of each task; 'all templates' is the ensemble of every template, "
            "training captions included. 'Caption-form prompts' are the training split's emoji names with the attribute "
            "left open ('woman health worker, {} skin tone'), averaged, or scored by the nearest prompt (the best cosine "
            "over a class's prompts); filled in, they spell many test pictures' own captions (the column says how many), "
            "so the nearest of them is close to caption retrieval. The caption forms of people absent from the test split "
            "spell no test caption, but every one of their prompts is a training caption: a nearest-training-caption "
            "rule, not zero-shot.\n\n"
            + task_table(results) +
            "\nWhat ensembling changes, on the same pictures: all templates against the first one (the table above counts "
            "the training captions among the prompts of each), the difference of the two top-1 accuracies with a 95% interval from a paired bootstrap "
            "over the pictures; 'pictures net' is the difference in pictures.\n\n"
            + ensembling_table(results))
    return text, results


# %% [markdown]
# ## Measured: the book's MiniCLIP on held-out emoji
#
# The model is the `mini-cpu` run of the training chapter (`book_model()`: `runs/mini`, trained first if
# it is missing).

# %%
model, model_cfg = book_model()
section, emoji_results = zero_shot_section(model)
display(Markdown(no_headings(section)))
res = {r['task'].removeprefix('emoji '): r for r in emoji_results}


# %% [markdown]
# The verdict on each task, from the first table: the zero-shot classifier against chance and the
# majority class on the same pictures, each with its paired interval. A task below its majority class is
# said to be, whatever it scores against chance.

# %%
#| echo: false
def verdict(r: dict) -> str:
    "One sentence: the zero-shot top-1 against chance and the majority class, with the paired intervals."
    v, ch = r['vs_majority'], r['vs_chance']
    return (f"{r['task']}: the zero-shot classifier scores {100 * r['zero_shot_top1']:.1f}%, "
            f"{'above' if ch['lo'] > 0 else 'below' if ch['hi'] < 0 else 'not distinguishable from'} chance "
            f"({100 * r['chance']:.1f}%; {100 * ch['diff']:+.1f} points [{100 * ch['lo']:+.1f}, {100 * ch['hi']:+.1f}]) and "
            f"{v['reading']} ({100 * r['majority']:.1f}%, always answering {r['majority_class']!r}; "
            f"{100 * v['diff']:+.1f} points [{100 * v['lo']:+.1f}, {100 * v['hi']:+.1f}])."
            + (f" Its mean per-class recall, {100 * r['zero_shot_recall']:.1f}%, is "
               f"{'above' if r['zero_shot_recall'] > 1 / r['classes'] else 'not above'} the {100 / r['classes']:.1f}% that "
               "always answering one class scores on that metric." if v['hi'] < 0 else ''))
display(Markdown('\n'.join(f"* {verdict(r)}" for r in emoji_results)))

# %%
if not in_test():
    for r in emoji_results:      # the printed reading is the data's: above the bar exactly when the interval says so
        assert (r['vs_majority']['lo'] > 0) <= (r['zero_shot_top1'] > baseline(r['chance'], r['majority'])), r
        assert r['caption_prompts']['zero_shot'] == 0, r          # "zero-shot": no prompt is a training caption
    for a in ('skin_tone', 'gender'):          # the prose below: these two clear the majority class
        assert res[a]['vs_majority']['reading'] == 'above the majority class', res[a]
    cat = res['category']                      # and the kind of emoji does not: below its majority, above chance
    assert cat['vs_majority']['reading'] == 'below the majority class' and cat['vs_chance']['lo'] > 0, cat
    assert cat['zero_shot_recall'] > 1 / cat['classes'], cat   # per-class recall of the majority answer is 1 / classes

# %% [markdown]
# ### Reading the rules
#
# For the skin tone, the nearest caption-form prompt scores far above every averaged rule. The
# table's columns say why it cannot be read as zero-shot classification: every one of its prompts is a
# training caption, most held-out pictures have their own caption among them, and picking the nearest
# of a few hundred captions, one of them the picture's own, is caption retrieval. The caption forms of
# people the test split never shows spell no test caption, but they too are all training captions:
# their nearest prompt is the nearest *training caption*, not a zero-shot rule. How each compares with
# the zero-shot classifier, on the same pictures:

# %%
#| echo: false
tone_res = res['skin_tone']
tone_feats, tone_labels = encode_images(model, tone.dataset, progress=False)
rule_hits = {k: (rule_logits(model, tone_feats, tone, k).argmax(1) == tone_labels).numpy() for k in tone_res['prompts']}
vs_ens = {k: paired_bootstrap(rule_hits[k], rule_hits['zero_shot']) for k in ('captions_nearest', 'unseen_nearest')}
def pts(d): return f"{100 * d['diff']:+.1f} points [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]"
def beyond(d): return 'beyond luck' if d['excludes_zero'] else 'not distinguishable from it'
u, c = vs_ens['unseen_nearest'], vs_ens['captions_nearest']
display(Markdown(
    f"On the skin tone, the caption-form nearest prompt scores {100 * tone_res['captions_nearest_top1']:.1f}% with "
    f"{tone_res['own_captions']['captions_nearest']} of {tone_res['n']} pictures' own captions among its prompts "
    f"({training_caption_note(tone_res, 'captions_nearest')} prompts are training captions): {pts(c)} against the "
    f"zero-shot classifier ({beyond(c)}), a caption-retrieval reading. The nearest caption form of the "
    f"{len(tone.unseen_caption_templates)} people absent from the test split, with "
    f"{tone_res['own_captions']['unseen_nearest']} own captions among its prompts but "
    f"{training_caption_note(tone_res, 'unseen_nearest')} prompts training captions, scores "
    f"{100 * tone_res['unseen_nearest_top1']:.1f}% (chance {100 * tone_res['chance']:.1f}%, majority class "
    f"{100 * tone_res['majority']:.1f}%): {pts(u)} against the zero-shot classifier, "
    + ('beyond luck. So the nearest *training* caption of other people beats the zero-shot classifier; it is a '
       'nearest-training-caption rule, not zero-shot.' if u['lo'] > 0 else
       'below it beyond luck.' if u['hi'] < 0 else
       'not distinguishable from it. So the caption forms win by retrieving the picture\'s own caption, and this run does '
       'not show that the nearest training caption of other people helps.')))

# %%
if not in_test():
    assert tone_res['own_captions']['captions_nearest'] > tone_res['n'] / 2, tone_res      # "most held-out pictures"
    assert tone_res['own_captions']['unseen_nearest'] == 0, tone_res                      # "spell no test caption"
    assert tone_res['caption_prompts']['unseen_nearest'] == 5 * len(tone.unseen_caption_templates), tone_res  # "all training captions"
    assert c['lo'] > 0, c                                                                   # "far above"


# %% [markdown]
# A confusion matrix shows *how* the skin-tone classifier errs: neighbours on the scale, as one would
# hope from a model that learned the tones as colours, or anywhere.

# %%
#| exports
def confusion(model, task: Task, rule: str = 'ensemble', device=None) -> torch.Tensor:
    "Counts [C, C] of (true class, predicted class) under one rule of `METHODS`."
    feats, labels = encode_images(model, task.dataset, device=device)
    C = len(task.classnames)
    return torch.bincount(labels * C + rule_logits(model, feats, task, rule, device).argmax(1), minlength=C * C).view(C, C)


# %%
#| fig-cap: "Confusion matrices of the skin-tone task on held-out emoji under two rules: the zero-shot classifier (mean embedding of the templates that are no training caption), and the nearest caption form of people absent from the test split (every prompt a training caption)."
#| fig-alt: "Two 5 by 5 heat maps of counts, true skin tone from light to dark on the rows against the predicted tone on the columns, one for the zero-shot classifier and one for the nearest caption form of unseen people. Each cell is labelled with its count; the tables above give the accuracies."
fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.8))
for ax, rule in zip(axes, ('zero_shot', 'unseen_nearest')):
    cm = confusion(model, tone, rule)
    test_eq(int(cm.sum()), tone_res['n'])
    ax.imshow(cm, cmap='Blues')
    ax.set(xticks=range(5), yticks=range(5), xticklabels=TONES, yticklabels=TONES, xlabel='predicted', ylabel='true',
           title=f"skin tone: {dict(zero_shot='zero-shot templates', unseen_nearest='nearest training caption, unseen people')[rule]}")
    ax.title.set_fontsize(9)
    plt.setp(ax.get_xticklabels(), rotation=40, ha='right')
    for i in range(5):
        for j in range(5): ax.text(j, i, int(cm[i, j]), ha='center', va='center', fontsize=8,
                                   color='white' if cm[i, j] > cm.max() / 2 else 'black')
fig.suptitle('Held-out emoji, true against predicted skin tone', fontsize=10)
fig.tight_layout(); plt.show()

# %% [markdown]
# ## Measured: colour, shape and count on scenes
#
# These need a model trained on scenes: the `scenes-tiny` preset of the training chapter, a
# MiniCLIP with two layers per tower trained for a few minutes on a CPU (`runs/scenes`).

# %%
scene_model, _ = book_model(preset='scenes-tiny')
scene_results = [run_task(scene_model, scene_task(a, n=pick_n)) for a in ('color', 'shape', 'count')
                 for pick_n in [40 if in_test() else 400]]
display(Markdown(task_table(scene_results) + '\n' + majority_table(scene_results)))

# %%
if not in_test():
    for r in scene_results:      # the reading in the table is the data's
        assert (r['vs_majority']['lo'] > 0) <= (r['zero_shot_top1'] > baseline(r['chance'], r['majority'])), r
        assert r['caption_prompts']['zero_shot'] == 0 and r['caption_prompts']['ensemble'] > 0, r
    assert scene_results[0]['vs_majority']['lo'] > 0.5, scene_results[0]   # colour: far above its majority class

# %% [markdown]
# ## Prediction for one picture
#
# What a user of `clip.load` does with one image, on a held-out emoji picture (`preprocess` resizes
# and normalises a PIL image as in the pretrained-weights chapter):

# %%
rec = next(r for r in EmojiDataset('test', train=False).records if r.skin_tone == 'dark' and r.gender == 'woman')
img = Image.fromarray(EmojiDataset('test', train=False).images[EmojiDataset('test', train=False).records.index(rec)].permute(1, 2, 0).numpy())
ranked = predict(model, image_transform(model.visual.input_resolution), img,
                 [rec.name, rec.name.replace('dark', 'light'), rec.name.replace('woman', 'man'), 'dog', 'flag of france'])
print(f"{rec.char} {rec.name!r}:")
for label, p in ranked: print(f"  {p:6.1%}  {label}")
test_close(sum(p for _, p in ranked), 1.0, eps=1e-5)

# %% [markdown]
# ## What we measured
#
# Printed by the cells above in this run: the zero-shot accuracy of the book's MiniCLIP on held-out
# emoji (skin tone, gender presentation, kind) and of the scenes model on colour, shape and count, each
# with its chance level and majority class, the zero-shot classifier's reading against the majority
# class, and every rule with how many of its prompts are training captions (and, for the emoji, how many
# pictures have their own caption among them).

# %%
for r in emoji_results + scene_results:
    own = lambda k: '' if r['own_captions'].get(k) is None else f", {r['own_captions'][k]} own captions"
    print(f"{r['task']:16} (n={r['n']}, chance {100 * r['chance']:4.1f}%, majority class {100 * r['majority']:4.1f}%): "
          f"zero-shot {100 * r['zero_shot_top1']:.1f}%, {r['vs_majority']['reading']}; other rules: "
          + ', '.join(f"{METHODS[k]} {100 * r[f'{k}_top1']:.1f}% ({training_caption_note(r, k)} prompts training captions{own(k)})"
                      for k in r['prompts'] if k != 'zero_shot'))
_ = footer()
