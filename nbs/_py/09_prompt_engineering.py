# %% [markdown]
# # Prompt engineering and ensembling
#
# > Which sentence should carry a class name into the text tower? The bare name, the paper's "A photo of a {label}.", the captions' own phrasing, or an average of many: measured on the book's MiniCLIP, with the spread over paraphrases and the cost of ensembling in embedding or probability space.

# %%
#| default_exp prompts

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
from typing import Callable
import torch
import torch.nn.functional as F
from clip_annotated.tasks import Task
from clip_annotated.zeroshot import classification_metrics, encode_images, encode_texts, fill_template, zero_shot_logits

# %%
#| hide
import time
import numpy as np
import matplotlib.pyplot as plt
from torch.utils.data import Subset
from IPython.display import Markdown, display
from fastcore.test import test_eq, test_close, test_fail
from clip_annotated.core import footer, in_test, pick, seed_everything
from clip_annotated.data import DEFAULT_TEMPLATES, EmojiDataset, TONES
from clip_annotated.model import create_model
from clip_annotated.train import PRESETS
from clip_annotated.run import book_model
from clip_annotated.tokenizer import default_tokenizer
from clip_annotated.tasks import caption_prompts, emoji_task, own_captions, scene_task, training_caption_set
from clip_annotated.zeroshot import against_majority, baseline, evaluate, majority_hits, paired_bootstrap, zero_shot_classifier

# %%
_ = seed_everything(0)


# %% [markdown]
# The zero-shot chapter turned class names into a classifier and used one list of templates per
# task without asking where the list came from. This chapter asks. At the end of it you can score any
# list of templates on a task in one pass of the text tower, see how far accuracy moves when only the
# wording changes, grow an ensemble one template at a time, and choose between averaging text
# embeddings and averaging probabilities knowing what each costs.
#
# ```{mermaid}
# flowchart TD
#   S["C class names × T templates<br/>= T·C sentences"] --> E["text tower, once:<br/>E [T, C, d]"]
#   E --> W1["one template t:<br/>W [d, C] from E[t]"]
#   E --> WE["mean over t,<br/>renormalise:<br/>W [d, C]<br/>(embedding space)"]
#   E --> P["T classifiers,<br/>mean of softmaxes:<br/>p [N, C]<br/>(probability space)"]
# ```
#
# ## What the paper says
#
# > "A common issue is polysemy. When the name of a class is the only information provided to CLIP's
# > text encoder it is unable to differentiate which word sense is meant due to the lack of context."
# > (Radford et al. 2021, §3.1.4)
#
# > "it's relatively rare in our pre-training dataset for the text paired with the image to be just a
# > single word. Usually the text is a full sentence describing the image in some way." (§3.1.4)
#
# > "we found that using the prompt template 'A photo of a {label}.' to be a good default that helps
# > specify the text is about the content of the image. [...] just using this prompt improves accuracy
# > on ImageNet by 1.3%." (§3.1.4)
#
# The paper then fits prompts to the task: "A photo of a {label}, a type of pet." on Oxford-IIIT Pets,
# *a type of food* on Food101, quotes around the text on OCR sets, "a satellite photo of a {label}."
# on satellite images. And it ensembles:
#
# > "On ImageNet, we ensemble 80 different context prompts and this improves performance by an
# > additional 3.5% over the single default prompt discussed above. When considered together, prompt
# > engineering and ensembling improve ImageNet accuracy by almost 5%." (§3.1.4)
#
# Figure 4 of the paper shows the same gain, almost 5 points averaged over 36 data sets, as worth
# about a fourfold increase in compute with the bare class names.
#
# In plain words: the text tower was trained on *captions*, so a class name works best dressed as a
# caption of the kind the model saw, about the kind of picture at hand. Ours saw emoji names in six
# templates, not alt-text, so the paper's default need not be ours; this chapter measures which
# wording is, and whether the paper's three effects (context beats the bare name, fitting the domain
# helps, ensembling helps) survive on a far smaller model trained on a different kind of caption.
#
# ## Encode once, score many
#
# A sweep over templates would be slow if each template rebuilt the classifier from scratch through
# `zero_shot_classifier`. Instead, every (template, class) sentence goes through the text tower once,
# as a tensor `E` of unit embeddings `[T, C, d]`. A single template is then a slice `E[t]`, an
# ensemble of any subset is a mean over the first axis followed by renormalisation, and the image
# features `I_e [N, d]` are encoded once per task. Templates are strings with `{}` or functions of the
# class name, as in the zero-shot chapter.

# %%
#| exports
def template_text(template: str | Callable[[str], str]) -> str:
    "A template as text for tables: a string as it is, a function shown applied to the placeholder '{}' (or its name)."
    if not callable(template): return template
    try: return template('{}')
    except (KeyError, IndexError, TypeError, ValueError): return getattr(template, '__name__', repr(template))

def template_embeddings(model, classnames: list[str], templates, batch_size: int = 256, device=None) -> torch.Tensor:
    "Unit text embeddings E [T, C, d] of every (template, class name) sentence, encoded in one pass."
    if not classnames or not templates: raise ValueError("template_embeddings needs at least one class name and one template")
    texts = [fill_template(t, c) for t in templates for c in classnames]               # T·C sentences, template-major
    return encode_texts(model, texts, batch_size, device).view(len(templates), len(classnames), -1)

def ensemble_weights(E: torch.Tensor, idx=None) -> torch.Tensor:
    "Embedding-space ensemble of templates `idx` (default: all) of E [T, C, d]: zero-shot weights [d, C]."
    E = E if idx is None else E[list(idx)]                                       # [t, C, d]
    return F.normalize(E.mean(dim=0), dim=-1).T                                  # [d, C]


# %% [markdown]
# The check: on a model with random weights (the identity is about the arithmetic, not about what the
# model learned), a slice of `E` is the zero-shot chapter's single-template classifier, and the mean
# over all of `E` is its ensemble classifier.

# %%
rand_model = create_model('MiniCLIP').eval()
toy_classes = ['cat', 'dog', 'red apple']
toy_templates = ['a photo of a {}.', 'an emoji of {}.', '{}', lambda c: f'{c}!']
E = template_embeddings(rand_model, toy_classes, toy_templates)
test_eq(E.shape, (4, 3, rand_model.text_projection.shape[1]))
test_close(E.norm(dim=-1), torch.ones(4, 3), eps=1e-5)
for i, t in enumerate(toy_templates): test_close(ensemble_weights(E, [i]), zero_shot_classifier(rand_model, toy_classes, [t]), eps=1e-5)
test_close(ensemble_weights(E), zero_shot_classifier(rand_model, toy_classes, toy_templates), eps=1e-5)
print('E', tuple(E.shape), '| templates as text:', [template_text(t) for t in toy_templates])


# %% [markdown]
# ## A sweep, a paired comparison and an ensemble curve
#
# `template_predictions` gives every template's predicted class for every picture, `[T, N]`, from one
# matrix product; `template_sweep` turns it into a table row per template: top-1 accuracy and mean
# per-class recall (the paper's metric for unbalanced sets; our category task is one). Both take the
# task's image features as an argument, so one encoding of the pictures serves every template.
#
# Our test sets are small (a few hundred pictures), so two templates a few points apart may differ
# by luck of the pictures. Since both templates are scored on the *same* pictures, the right error bar
# is a paired one: `paired_bootstrap` (from the [zero-shot chapter](07_zeroshot.ipynb)) resamples pictures, and recomputes the difference of the two
# accuracies on each resample; the middle of those differences, at the book's one `level=0.95`, is the interval.
#
# `ensemble_curve` answers "how many templates are enough?": it shuffles the templates `orders`
# times and, for each order, scores the ensemble of the first 1, 2, ..., T. Averaging over orders
# separates the effect of the *number* of templates from the luck of *which* templates came first;
# the spread over orders is that luck. It keeps running sums, so a whole curve costs one pass: the
# logits of a prefix ensemble are the summed logits of its templates divided by the norm of their
# summed embeddings, class by class.

# %%
#| exports
def _scores(features: torch.Tensor, labels: torch.Tensor, W: torch.Tensor) -> dict:
    "Top-1 accuracy and mean per-class recall of the zero-shot weights W [d, C] on unit features [N, d]."
    m = classification_metrics(zero_shot_logits(features, W), labels, ks=(1,))
    return dict(top1=m['top1'], recall=m['mean_per_class_recall'])

def task_features(model, task: Task, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    "(unit image features [N, d], labels [N]) of a task's pictures: encode once, reuse for every template."
    return encode_images(model, task.dataset, device=device, progress=False)

def template_predictions(features: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    "Predicted class [T, N] of every picture (unit features [N, d]) under each template of E [T, C, d] alone."
    return torch.einsum('nd,tcd->tnc', features.float(), E.float()).argmax(dim=-1)

def template_sweep(model, task: Task, templates=None, features=None, device=None) -> list[dict]:
    "One row per template (default: the task's own): its top-1 accuracy and mean per-class recall on `task`, used alone."
    templates = list(task.templates if templates is None else templates)
    feats, labels = features if features is not None else task_features(model, task, device)
    E = template_embeddings(model, task.classnames, templates, device=device)
    return [dict(task=task.name, template=template_text(t), **_scores(feats, labels, ensemble_weights(E, [i])))
            for i, t in enumerate(templates)]

def ensemble_curve(model, task: Task, templates=None, orders: int = 20, seed: int = 0, features=None,
                   device=None) -> torch.Tensor:
    "Top-1 accuracies [orders, T]: entry (r, k) is the ensemble of the first k+1 templates of random order r."
    templates = list(task.templates if templates is None else templates)
    feats, labels = features if features is not None else task_features(model, task, device)
    E = template_embeddings(model, task.classnames, templates, device=device)              # [T, C, d]
    L = torch.einsum('nd,tcd->tnc', feats.float(), E)                                      # [T, N, C] per-template logits
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(orders, len(templates), dtype=torch.float64)
    for r in range(orders):
        order = torch.randperm(len(templates), generator=g)
        norms = E[order].cumsum(0).norm(dim=-1)                                            # [T, C] |sum of the first k+1|
        pred = (L[order].cumsum(0) / norms[:, None, :]).argmax(-1)                         # [T, N]
        out[r] = (pred == labels).double().mean(-1)
    return out


# %% [markdown]
# The checks, on a toy task: nine random pictures of the random-weight model, labelled at random.
# Each row of the sweep agrees with the zero-shot chapter's `evaluate` run with that template alone;
# in the curve, the first column holds single templates and the last the full ensemble, the same
# whatever the order; a template compared with itself differs by exactly zero.

# %%
res = rand_model.visual.input_resolution
toy_task = Task('toy', [(torch.randn(3, res, res), i % 3) for i in range(9)], toy_classes, toy_templates)
sweep = template_sweep(rand_model, toy_task)
test_eq(len(sweep), 4); test_eq(sweep[3]['template'], '{}!')
for row, t in zip(sweep, toy_templates):
    test_close(row['top1'], evaluate(rand_model, toy_task.dataset, toy_classes, [t], ks=(1,))['top1'])
toy_feats, toy_labels = task_features(rand_model, toy_task)
preds = template_predictions(toy_feats, E)
test_eq(preds.shape, (4, 9))
test_close((preds == toy_labels).double().mean(1), torch.tensor([r['top1'] for r in sweep], dtype=torch.float64))
curve = ensemble_curve(rand_model, toy_task, orders=5, features=(toy_feats, toy_labels))
test_eq(curve.shape, (5, 4))
assert all(any(abs(v - r['top1']) < 1e-9 for r in sweep) for v in curve[:, 0].tolist())
test_close(curve[:, -1], torch.full((5,), evaluate(rand_model, toy_task.dataset, toy_classes, toy_templates, ks=(1,))['top1'], dtype=torch.float64))
ok = preds[0] == toy_labels
test_eq({k: paired_bootstrap(ok, ok)[k] for k in ('diff', 'lo', 'hi')}, dict(diff=0.0, lo=0.0, hi=0.0))
toy_majority = majority_hits(toy_labels).mean().item()
for row in sweep: print(f"{row['template']:18} top-1 {row['top1']:.1%}, mean per-class recall {row['recall']:.1%}; "
                        f"chance {toy_task.chance:.1%}, majority class {toy_majority:.1%}")

# %% [markdown]
# ## What the model was taught to read
#
# Before measuring prompts, recall what the text tower saw in training: every emoji name, in one of
# six templates drawn at random per picture and epoch (the data chapter's `DEFAULT_TEMPLATES`), and
# nothing else.

# %%
print('training caption templates:')
for i in range(0, len(DEFAULT_TEMPLATES), 3): print('  ' + ', '.join(map(repr, DEFAULT_TEMPLATES[i:i + 3])))
train_set = EmojiDataset('train', train=True)
print('four training captions:')
for i in (5, 400, 1200, 2000): print(f'  {train_set[i][1]!r}')
print('templates that mention a photo:', sum('photo' in t for t in DEFAULT_TEMPLATES), 'of', len(DEFAULT_TEMPLATES))
print('training emoji names that do:', sum('photo' in r.name for r in train_set.records), 'of', len(train_set))

# %% [markdown]
# Three consequences follow, before any measurement.
#
# * A skin tone appears in a caption only as "..., *X* skin tone" after a person or a body part, so
#   the bare word "dark" was never paired with a dark-skinned emoji. It is our polysemy case, as
#   ambiguous to this text tower as "boxer" is to CLIP's: a colour, a mood, or a tone?
# * "An emoji of X." and "X emoji" are, word for word, training captions whenever X is a training
#   emoji's name, and so is the bare "X": "an emoji of man.", "man emoji" and "man" were all trained on.
#   "A photo of a X." is not: "photo" is a token of the tokenizer's vocabulary whose embedding no
#   caption ever trained.
# * The kind-of-emoji names ("animal", "food or drink") are in no caption, "person" excepted; the
#   category task asks the model to get from "an emoji of dog." to the word "animal" through whatever
#   similarity of words it picked up, which is little. Expect that task to be hard for every prompt.
#
# So a prompt can *be* a training caption. Scoring one is not zero-shot transfer in the paper's sense,
# where the class names come in sentences the model never had to match; it is closer to looking up a
# caption the model was trained on. This chapter studies wording, so it keeps such templates, but marks
# them: every table counts, per template, how many of the prompts it fills in for the `C` classes are
# training captions (`caption_prompts` of the [tasks chapter](07a_tasks.ipynb)), the figures mark those
# templates with †, and "zero-shot" is said only of templates whose count is zero.
#
# ## Measured: one template at a time on held-out emoji
#
# The book's MiniCLIP (`book_model()`, the training chapter's `mini-cpu` run), on the three held-out
# emoji tasks of the zero-shot chapter. Per task, templates of five kinds:
#
# | kind | what it is | example |
# |---|---|---|
# | bare | the class name alone, the paper's "contextless" baseline | `{}` |
# | photo | the paper's default | `a photo of a {}.` |
# | photo + context | the default told the kind of thing, as "a type of pet" is | `a photo of a {}, a type of emoji.` |
# | captions' language | word for word the phrasing of the training captions | `an emoji of {}.`, `person, {} skin tone` |
# | mismatched | fitted to another domain | `a satellite photo of a {}.` |
#
# The first template of each kind is fixed before looking at any result; the comparisons further down
# use those, so that no template is chosen for having scored well on the test pictures. Because the
# first captions'-language template fills to training captions on the skin tone and on gender, the
# comparisons also use a second one fixed by a rule rather than by a score: the first template of that
# kind with no training-caption prompt ("captions' words, no caption").

# %%
PROMPT_KINDS = ('bare', 'photo', 'photo + context', "captions' language", 'mismatched')
CAPTIONS = PROMPT_KINDS[3]
CLEAN = "captions' words, no caption"   # the first captions'-language template that fills to no training caption
MISMATCHED = ['a satellite photo of a {}.', 'a photo of a {}, a type of food.']
FAMILIES = {   # task -> [(template, kind)]; the first of each kind is the one compared below
    'skin_tone': [('{}', 'bare'), ('a photo of a {}.', 'photo'), ('a photo of a person with {} skin.', 'photo + context'),
                  ('person, {} skin tone', CAPTIONS), ('an emoji of person, {} skin tone.', CAPTIONS),
                  ('{} skin tone', CAPTIONS), ('hand, {} skin tone', CAPTIONS)]
                 + [(t, 'mismatched') for t in MISMATCHED],
    'gender':    [('{}', 'bare'), ('a photo of a {}.', 'photo'), ('a photo of a {}, a type of person.', 'photo + context'),
                  ('an emoji of {}.', CAPTIONS), ('{} emoji', CAPTIONS), ('a picture of {}.', CAPTIONS), ('an icon of {}.', CAPTIONS),
                  ('an emoji of a {}.', CAPTIONS), ('a picture of a {}.', CAPTIONS)]
                 + [(t, 'mismatched') for t in MISMATCHED],
    'category':  [('{}', 'bare'), ('a photo of a {}.', 'photo'), ('a photo of a {}, a type of emoji.', 'photo + context'),
                  ('an emoji of a {}.', CAPTIONS), ('{} emoji', CAPTIONS), ('a picture of a {}.', CAPTIONS), ('an icon of a {}.', CAPTIONS)]
                 + [(t, 'mismatched') for t in MISMATCHED],
}
KIND_COLORS = dict(zip(PROMPT_KINDS, ('#9e9e9e', '#4c72b0', '#8fb8e8', '#55a868', '#c44e52')))
def pct(x): return f'{100 * x:.1f}%'
def ci(d): return f"{100 * d['diff']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]"


# %%
def chapter_model(preset: str = 'mini-cpu'):
    "The book's trained model for `preset` (a random-weight model of the same architecture when the book is tested)."
    return create_model(PRESETS[preset].clip_config()).eval() if in_test() else book_model(preset=preset)[0]

model = chapter_model()
tasks = {a: emoji_task(a, image_size=model.visual.input_resolution) for a in FAMILIES}
if in_test():   # the mechanics on the first 96 pictures of each task
    for t in tasks.values(): t.dataset = Subset(t.dataset, range(min(96, len(t.dataset))))

def n_caps(a: str, templates) -> int:
    "How many of the prompts `templates` fill in for task `a`'s classes are training captions."
    return caption_prompts(tasks[a], list(templates))
def caps_of(a: str, templates) -> str:
    "The same count as 'k of T·C', for a table."
    return f"{n_caps(a, templates):,} of {len(templates) * len(tasks[a].classnames):,}"
def dagger(a: str, template) -> str:
    "A template as text, with † when it fills to a training caption for some class of task `a`."
    return template_text(template) + (' †' if n_caps(a, [template]) else '')

features = {a: task_features(model, t) for a, t in tasks.items()}
majority = {a: majority_hits(features[a][1]).mean().item() for a in tasks}       # always the most frequent class
bar = {a: baseline(tasks[a].chance, majority[a]) for a in tasks}
rows, correct = [], {}
for a, fam in FAMILIES.items():
    temps = [t for t, _ in fam]
    for row, (t, kind) in zip(template_sweep(model, tasks[a], temps, features=features[a]), fam):
        rows.append(dict(row, attr=a, kind=kind, chance=tasks[a].chance, majority=majority[a], caps=caps_of(a, [t]),
                         shown=dagger(a, t)))
    feats, labels = features[a]   # per-picture correctness of each template, for the paired comparisons
    correct[a] = dict(zip(temps, template_predictions(feats, template_embeddings(model, tasks[a].classnames, temps)) == labels))

display(Markdown('| task | chance | majority class | kind | template | prompts that are training captions | top-1 | mean per-class recall |\n'
                 '|---|---:|---:|---|---|---:|---:|---:|\n' +
                 '\n'.join(f"| {r['task']} | {pct(r['chance'])} | {pct(r['majority'])} | {r['kind']} | `{r['template']}` | {r['caps']} | "
                           f"{pct(r['top1'])} | {pct(r['recall'])} |" for r in rows)))

# %% [markdown]
# The same numbers as a figure: one bar per template, one panel per task, coloured by kind, with † on
# the templates that fill to a training caption for at least one class (their scores are top-1
# accuracies, not zero-shot ones); the dashed line is chance (one over the number of classes), the
# dotted line the majority class.

# %%
#| fig-cap: "Top-1 accuracy of the book model with one prompt template at a time, for the skin-tone, gender and category tasks, coloured by kind of template; a dagger marks a template that fills to a training caption for some class, so its bar is not a zero-shot score."
#| fig-alt: "Three horizontal bar charts stacked one above the other, one per task, with about ten templates each, coloured by kind: the bare class name, the photo default, the photo default with context, templates in the captions' language, and mismatched ones such as 'a satellite photo of a {}.'. Templates that fill to a training caption carry a dagger in their label. Each bar is labelled with its accuracy; a dashed line marks chance and a dotted line the majority class, which on the category task lies far to the right of every bar. The table above gives the values."
fig, axes = plt.subplots(3, 1, figsize=(8, 11), sharex=True)
for ax, a in zip(axes, FAMILIES):
    rs = [r for r in rows if r['attr'] == a]
    y = np.arange(len(rs))[::-1]
    ax.barh(y, [100 * r['top1'] for r in rs], color=[KIND_COLORS[r['kind']] for r in rs])
    for yi, r in zip(y, rs): ax.text(100 * r['top1'] + 1, yi, f"{100 * r['top1']:.0f}", va='center', fontsize=9)
    ax.axvline(100 * tasks[a].chance, ls='--', c='k', lw=1)
    ax.axvline(100 * majority[a], ls=':', c='k', lw=1.2)
    ax.set(yticks=y, xlim=(0, 100), title=f"{tasks[a].name}: chance {100 * tasks[a].chance:.0f}%, majority class {100 * majority[a]:.0f}%")
    ax.set_yticklabels([r['shown'] for r in rs], fontsize=10)
    ax.title.set_fontsize(11)
axes[-1].set_xlabel('top-1 accuracy (%)', fontsize=10)
handles = [plt.Rectangle((0, 0), 1, 1, color=KIND_COLORS[k]) for k in PROMPT_KINDS] + [plt.Line2D([], [], ls='--', c='k'),
                                                                                     plt.Line2D([], [], ls=':', c='k')]
fig.legend(handles, list(PROMPT_KINDS) + ['chance', 'majority class'], loc='lower center', bbox_to_anchor=(0.5, 0.03),
           ncol=4, fontsize=10, frameon=False)
fig.text(0.5, 0.01, '† the template fills to a training caption for some class: a top-1 accuracy, not a zero-shot one',
         ha='center', fontsize=10)
fig.suptitle('Top-1 accuracy of the book MiniCLIP, one template at a time (held-out emoji)', fontsize=12)
fig.tight_layout(rect=(0, 0.09, 1, 1)); plt.show()

# %% [markdown]
# ### The paper's comparisons, paired
#
# The paper reports its default against the bare name (+1.3 points on ImageNet, §3.1.4) and fitted
# prompts against the default. Here are the same differences on our tasks, with the first template of
# each kind (listed in the second table), and paired bootstrap intervals at the book's one level (an
# interval that contains 0 is a difference the test set cannot tell from luck). A column gives, for
# each side, how many of its prompts are training captions: only a row with 0 on both sides compares
# two zero-shot prompts.

# %%
first = {a: {k: next(t for t, kk in fam if kk == k) for k in PROMPT_KINDS} for a, fam in FAMILIES.items()}
for a, fam in FAMILIES.items(): first[a][CLEAN] = next(t for t, k in fam if k == CAPTIONS and not n_caps(a, [t]))
assert n_caps('skin_tone', [first['skin_tone'][CAPTIONS]]) and n_caps('gender', [first['gender'][CAPTIONS]])   # the text above
COMPARISONS = [('photo', 'bare'), (CLEAN, 'photo'), (CAPTIONS, 'photo'), (CAPTIONS, 'bare'), ('photo + context', 'photo'),
               ('mismatched', CLEAN)]
paired = {(a, x, y): paired_bootstrap(correct[a][first[a][x]], correct[a][first[a][y]], n_boot=pick(2000, 2000, test=200))
          for a in FAMILIES for x, y in COMPARISONS}
def caps_pair(a, x, y) -> str:
    "Training-caption prompts of the two templates compared, 'k vs k of C'."
    return f"{n_caps(a, [first[a][x]])} vs {n_caps(a, [first[a][y]])} of {len(tasks[a].classnames)}"
display(Markdown('| comparison | task | prompts that are training captions, each side | difference (points, 95% paired) |\n'
                 '|---|---|---:|---:|\n' +
                 '\n'.join(f"| {x} − {y} | {tasks[a].name} | {caps_pair(a, x, y)} | {100 * paired[(a, x, y)]['diff']:+.1f} "
                           f"[{100 * paired[(a, x, y)]['lo']:+.1f}, {100 * paired[(a, x, y)]['hi']:+.1f}] |"
                           for x, y in COMPARISONS for a in FAMILIES)))
display(Markdown('| templates compared (training-caption prompts) | ' + ' | '.join(tasks[a].name for a in FAMILIES) + ' |\n|---|'
                 + '---|' * len(FAMILIES) + '\n'
                 + '\n'.join(f"| {k} | " + ' | '.join(f"`{first[a][k]}` ({caps_of(a, [first[a][k]])})" for a in FAMILIES) + ' |'
                             for k in PROMPT_KINDS + (CLEAN,))))


# %% [markdown]
# Reading these against the paper, where "beyond luck" means the interval above leaves out 0:

# %%
#| echo: false
def interval(a, x, y):
    d = paired[(a, x, y)]; return f"{100 * d['diff']:+.1f} points [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]"
def beyond(a, x, y) -> int:
    "+1 if template kind x beats kind y on task a beyond luck, -1 if it loses beyond luck, 0 if the interval holds 0."
    d = paired[(a, x, y)]; return 1 if d['lo'] > 0 else -1 if d['hi'] < 0 else 0
def names(keys) -> str:
    n = [tasks[a].name for a in keys]; return ' and '.join(n) if len(n) < 3 else ', '.join(n[:-1]) + ' and ' + n[-1]
def k_of(a, kind) -> str: return f"{n_caps(a, [first[a][kind]])} of {len(tasks[a].classnames)}"
LUCK = {1: 'beyond luck', -1: 'beyond luck', 0: 'within luck'}

helps = [a for a in FAMILIES if beyond(a, 'photo', 'bare') > 0]
hurts = [a for a in FAMILIES if beyond(a, 'photo', 'bare') < 0]
bare_caps = [a for a in FAMILIES if n_caps(a, [first[a]['bare']])]
bare_words = list(dict.fromkeys(c for a in bare_caps for c in tasks[a].classnames if c in training_caption_set('emoji')))
b1 = ('* **"A photo of a {}." is not our default.** The paper gives one reason for it: it "helps specify the text is about '
      'the content of the image" (§3.1.4). Our captions describe emoji, and the token "photo" was never trained, so whether '
      'the default carries over is a question for the measurement. ')
if helps:
    b1 += (f"Added to the bare name it helps beyond luck on {names(helps)} all the same; this measures that the words "
           "\"a photo of a\" (\"a\" and \"of\" trained, \"photo\" not) change the answers, not why. ")
else:
    b1 += ("Added to the bare name it brings no gain beyond luck on any task, where the paper saw +1.3 points on ImageNet"
           + (f", and it costs accuracy beyond luck on {names(hurts)}" if hurts else '')
           + "; this measures only what adding the words \"a photo of a\" (\"a\" and \"of\" trained, \"photo\" not) "
             "does to the accuracy, not why. ")
if bare_caps:
    b1 += ("Only where the bare name fills to no training caption is this a comparison of two zero-shot prompts"
           + (f" ({names([a for a in FAMILIES if a not in bare_caps])})" if len(bare_caps) < len(FAMILIES) else ', which is on no task')
           + "; elsewhere the bare name is itself a training caption, for "
           + ' and '.join(f"{k_of(a, 'bare')} classes on {tasks[a].name}" for a in bare_caps)
           + f" ({', '.join(repr(c) for c in bare_words)} are captions)"
           + ', so there the photo default, a zero-shot prompt, is set against looked-up captions.')

clean_wins = [a for a in FAMILIES if beyond(a, CLEAN, 'photo') > 0]
clean_loses = [a for a in FAMILIES if beyond(a, CLEAN, 'photo') < 0]
vs_photo = ', '.join(f"{interval(a, CLEAN, 'photo')} on {tasks[a].name} (`{first[a][CLEAN]}`)" for a in FAMILIES)
if clean_wins and not clean_loses:
    head = (f"* **Zero-shot, the captions' words are the ones to use**: in a template that fills to no training caption, they "
            f"beat the photo default beyond luck on {names(clean_wins)} and lose to it beyond luck on no task ({vs_photo}). ")
elif clean_wins:
    head = (f"* **Zero-shot, neither phrasing wins everywhere**: in a template that fills to no training caption, the captions' "
            f"words beat the photo default beyond luck on {names(clean_wins)} and lose to it beyond luck on "
            f"{names(clean_loses)} ({vs_photo}). ")
elif clean_loses:
    head = (f"* **Zero-shot, the photo default beats the captions' words on {names(clean_loses)}**, beyond luck, and loses to "
            f"them on no task; the captions' words here are in a template that fills to no training caption ({vs_photo}). ")
else:
    head = ("* **Zero-shot, the captions' words and the photo default cannot be told apart** on any task, with the captions' "
            f"words in a template that fills to no training caption ({vs_photo}). ")
b2 = (head + 'The paper\'s advice, "specify the text is about the content of the image", read as "say it as the training '
      'text said it", ' + ('holds here on every task where the two differ. ' if clean_wins and not clean_loses else
                           f"is not borne out on {names(clean_loses)}. " if clean_loses else
                           f"is tested here and the test is inconclusive: all {len(FAMILIES)} intervals hold zero. "))
cap_tasks = [a for a in FAMILIES if n_caps(a, [first[a][CAPTIONS]])]
if cap_tasks:
    b2 += (f"The first captions'-language template is itself a training caption on {names(cap_tasks)} ("
           + ', '.join(f"`{first[a][CAPTIONS]}`, {k_of(a, CAPTIONS)} prompts" for a in cap_tasks)
           + "), so there it measures prompting with training captions against the zero-shot photo default: "
           + ', '.join(f"{interval(a, CAPTIONS, 'photo')} on {tasks[a].name}, {LUCK[beyond(a, CAPTIONS, 'photo')]}"
                       for a in cap_tasks) + '. ')
b2 += (f"Against the bare tone word, `{first['skin_tone'][CAPTIONS]}` gains {interval('skin_tone', CAPTIONS, 'bare')} on the "
       f"skin tone, {LUCK[beyond('skin_tone', CAPTIONS, 'bare')]}; with {k_of('skin_tone', CAPTIONS)} of its prompts training "
       "captions and none of the bare word's, that gain mixes context for our polysemous \"boxer\" with recall of trained "
       "captions (the specificity ladder below takes the two apart). ")
if n_caps('gender', [first['gender']['bare']]) and n_caps('gender', [first['gender'][CAPTIONS]]):
    b2 += (f"On gender the bare word is a training caption (\"man\", filled into `{{}}`), and so is `{first['gender'][CAPTIONS]}` "
           f"(\"an emoji of man.\"), so captions' language − bare there compares two training-caption prompts, "
           f"{k_of('gender', 'bare')} each: {interval('gender', CAPTIONS, 'bare')}, {LUCK[beyond('gender', CAPTIONS, 'bare')]}.")
ctx = {a: beyond(a, 'photo + context', 'photo') for a in ('skin_tone', 'category')}
verb = {1: 'beats the photo default beyond luck', 0: 'does not beat the photo default beyond luck',
        -1: 'loses to the photo default beyond luck'}
b3 = (('* **Context helps when it is said in words the model learned.** ' if ctx == {'skin_tone': 1, 'category': 0} else
       '* **Context, said in words the model did or did not learn.** ')
      + 'The paper reports that "a type of pet" helped on Oxford-IIIT Pets, as context (§3.1.4), and gives no other reason; '
        'that CLIP had read such phrases in its captions is our guess, not the paper\'s, and ours never read "a type of". '
      f"`{first['skin_tone']['photo + context']}` adds \"person\" and \"skin\", both caption words, and {verb[ctx['skin_tone']]} "
      f"on the skin tone ({interval('skin_tone', 'photo + context', 'photo')}); `{first['category']['photo + context']}` adds "
      f"\"a type of\", which no caption had, and {verb[ctx['category']]} on the category "
      f"({interval('category', 'photo + context', 'photo')}); both sides are zero-shot prompts. ")
cost = min(FAMILIES, key=lambda a: paired[(a, 'mismatched', CLEAN)]['diff'])
b3 += (f"Templates from another domain cost most on {tasks[cost].name} ({interval(cost, 'mismatched', CLEAN)} against "
       f"`{first[cost][CLEAN]}`, both zero-shot).")
assert all(not n_caps(a, [first[a][k]]) for a in FAMILIES for k in ('photo', 'photo + context', 'mismatched', CLEAN))
display(Markdown('\n'.join([b1, b2, b3])))

# %%
#| hide
trained_ids = {i for c in training_caption_set('emoji') for i in default_tokenizer().encode(c)}
assert not set(default_tokenizer().encode('photo')) & trained_ids                              # "photo" not trained
assert set(default_tokenizer().encode('a of')) <= trained_ids                                  # "a" and "of" trained

# %% [markdown]
# ## Wording: paraphrases of one template
#
# If accuracy moved only with *what* a prompt says, paraphrases would score alike. Each task gets a
# dozen rewordings of its captions'-language template, saying the same thing; the spread of their
# accuracies is what wording alone is worth. Two of each dozen fill to training captions for some
# class (`an emoji of {}.` and `{} emoji` with "man" or "person"; `person, {} skin tone` and its emoji
# sentence for four of the five tones), so the table gives the spread twice: over all twelve, and
# over those whose prompts are no training caption, the zero-shot ones.

# %%
EMOJI_PARAPHRASES = ['an emoji of {}.', 'an emoji of a {}.', 'an emoji of the {}.', 'an emoji of {}', 'emoji of a {}',
                     'a {} emoji.', '{} emoji', 'the {} emoji', 'an emoji showing a {}.', 'an emoji depicting a {}.',
                     'this is an emoji of a {}.', 'a small emoji of a {}.']
PARAPHRASES = {
    'skin_tone': ['person, {} skin tone', 'a person, {} skin tone', 'person, {} skin tone.', 'a person with {} skin tone',
                  'person with {} skin', 'a person, {} skin', 'person ({} skin tone)', 'person: {} skin tone',
                  'someone with {} skin tone', 'a human, {} skin tone', 'an emoji of person, {} skin tone.',
                  'an emoji of a person with {} skin tone.'],
    'gender': EMOJI_PARAPHRASES, 'category': EMOJI_PARAPHRASES,
}
para = {a: template_sweep(model, tasks[a], PARAPHRASES[a], features=features[a]) for a in PARAPHRASES}
n_boot = pick(2000, 2000, test=200)
spread, para_sets = {}, []
for a, rs in para.items():
    acc = np.array([r['top1'] for r in rs])
    clean = np.array([not n_caps(a, [t]) for t in PARAPHRASES[a]])           # fills to no training caption
    hits = template_predictions(features[a][0], template_embeddings(model, tasks[a].classnames, PARAPHRASES[a])) == features[a][1]
    below = [i for i in range(len(acc)) if acc[i] < tasks[a].chance]
    spread[a] = dict(min=acc.min(), median=np.median(acc), max=acc.max(), worst=dagger(a, PARAPHRASES[a][int(acc.argmin())]),
                     best=dagger(a, PARAPHRASES[a][int(acc.argmax())]), below_chance=len(below),
                     below_chance_beyond=sum(paired_bootstrap(hits[i], torch.full(hits[i].shape, tasks[a].chance), n_boot=n_boot)['hi'] < 0
                                             for i in below),
                     below_bar=int((acc <= bar[a]).sum()), n_clean=int(clean.sum()),
                     clean_min=acc[clean].min(), clean_median=np.median(acc[clean]), clean_max=acc[clean].max(),
                     gap=paired_bootstrap(hits[int(acc.argmax())], hits[int(acc.argmin())], n_boot=n_boot))
    for label, keep in (('all', np.ones_like(clean)), ('no training caption', clean)):
        temps = [t for t, k in zip(PARAPHRASES[a], keep) if k]
        para_sets.append(dict(attr=a, set=label, n=len(temps), caps=caps_of(a, temps), min=acc[keep].min(),
                              median=np.median(acc[keep]), max=acc[keep].max()))
assert all(len(PARAPHRASES[a]) - s['n_clean'] == 2 for a, s in spread.items())   # "two of each dozen"
assert n_caps('skin_tone', ['person, {} skin tone']) == n_caps('skin_tone', ['an emoji of person, {} skin tone.']) == 4
display(Markdown('| task | paraphrases | count | prompts that are training captions | chance | majority class | min | median | max |\n'
                 '|---|---|---:|---:|---:|---:|---:|---:|---:|\n' +
                 '\n'.join(f"| {tasks[r['attr']].name} | {r['set']} | {r['n']} | {r['caps']} | {pct(tasks[r['attr']].chance)} | "
                           f"{pct(majority[r['attr']])} | {pct(r['min'])} | {pct(r['median'])} | {pct(r['max'])} |" for r in para_sets)))
display(Markdown('| task | worst paraphrase | best paraphrase | best − worst (points, 95% paired) |\n|---|---|---|---:|\n' +
                 '\n'.join(f"| {tasks[a].name} | `{s['worst']}` | `{s['best']}` | {100 * s['gap']['diff']:+.1f} "
                           f"[{100 * s['gap']['lo']:+.1f}, {100 * s['gap']['hi']:+.1f}] |" for a, s in spread.items())
                 + '\n\n† the paraphrase fills to a training caption for some class.'))

# %%
#| fig-cap: "Top-1 accuracy of each of a dozen paraphrased caption-form templates, per task, with their range, median, chance and majority class marked; hollow dots are paraphrases that fill to a training caption for some class, so only the filled dots are zero-shot scores."
#| fig-alt: "A dot plot with one row per task and one dot per paraphrase, against top-1 accuracy; filled dots for paraphrases that fill to no training caption, hollow dots for those that do. Under each row a bar spans worst to best with a tick at the median; a dashed tick marks chance and a dotted tick the majority class. The tables above and the paragraph below give the values."
fig, ax = plt.subplots(figsize=(8, 4.2))
for j, (a, rs) in enumerate(para.items()):
    acc = 100 * np.array([r['top1'] for r in rs])
    yj = np.full(len(acc), j) + np.linspace(-0.15, 0.15, len(acc))
    caught = np.array([bool(n_caps(a, [t])) for t in PARAPHRASES[a]])
    ax.scatter(acc[~caught], yj[~caught], s=22, alpha=0.85, color=KIND_COLORS[CAPTIONS],
               label='no training caption (zero-shot)' if j == 0 else None)
    ax.scatter(acc[caught], yj[caught], s=30, facecolors='none', edgecolors=KIND_COLORS[CAPTIONS], linewidths=1.4,
               label='fills to a training caption' if j == 0 else None)
    s = spread[a]
    ax.plot([100 * s['min'], 100 * s['max']], [j - 0.3, j - 0.3], c='k', lw=1)
    ax.plot([100 * s['median']] * 2, [j - 0.38, j - 0.22], c='k', lw=2)
    ax.plot([100 * tasks[a].chance] * 2, [j - 0.45, j + 0.45], c='k', ls='--', lw=1, label='chance' if j == 0 else None)
    ax.plot([100 * majority[a]] * 2, [j - 0.45, j + 0.45], c='k', ls=':', lw=1.2, label='majority class' if j == 0 else None)
ax.set(yticks=range(len(para)), ylim=(-0.6, len(para) - 0.4), xlim=(0, 100))
ax.set_yticklabels([tasks[a].name for a in para], fontsize=10)
ax.set_xlabel('top-1 accuracy (%)', fontsize=10)
ax.set_title('Same meaning, different words: one dot per paraphrase', fontsize=11)
fig.legend(*ax.get_legend_handles_labels(), loc='lower center', ncol=2, fontsize=9, frameon=False)
fig.tight_layout(rect=(0, 0.12, 1, 1)); plt.show()

# %% [markdown]
# Each dot is one paraphrase, hollow where it fills to a training caption; the bar under the dots runs
# from the worst to the best, with a tick at the median; the dashed tick is chance, the dotted one the
# majority class.

# %%
#| echo: false
gap = {a: s['gap'] for a, s in spread.items()}
text = ("Measured in this run, the best paraphrase against the worst on the same pictures: "
        + ', '.join(f"{100 * g['diff']:+.1f} points [{100 * g['lo']:+.1f}, {100 * g['hi']:+.1f}] on {tasks[a].name}" for a, g in gap.items())
        + ". This is a description, not a test: the two were picked as the extremes of twelve after seeing their scores, "
          "and the largest of many differences is larger than a difference fixed in advance, so even an interval that "
          "leaves out zero overstates how much one wording, chosen beforehand, would differ from another. ")
caught_best = [a for a, s in spread.items() if s['best'].endswith('†')]
if caught_best:
    text += (f"On {names(caught_best)} the best paraphrase fills to training captions; among the paraphrases that do not, "
             + ', '.join(f"{tasks[a].name} spans {pct(spread[a]['clean_min'])} to {pct(spread[a]['clean_max'])}" for a in caught_best)
             + ". ")
for a in [a for a, s in spread.items() if s['below_chance']]:
    s = spread[a]
    text += (f"On {tasks[a].name}, {s['below_chance']} of the twelve paraphrases score below chance as point estimates, and "
             f"{s['below_chance_beyond']} of those {s['below_chance']} {'is' if s['below_chance_beyond'] == 1 else 'are'} "
             "below it beyond luck (95% bootstrap over the pictures "
             "against chance); the rest are within luck of chance. ")
if not any(s['below_chance'] for s in spread.values()): text += "No paraphrase scores below chance. "
low = [a for a, s in spread.items() if s['below_bar'] == len(para[a])]
text += (f"On {', '.join(tasks[a].name for a in low)} every paraphrase scores at or below the majority class "
         f"({', '.join(pct(majority[a]) for a in low)}): wording does not lift that task over the class frequencies."
         if low else "Every task has a paraphrase above its majority class.")
display(Markdown(text))

# %% [markdown]
# ### Specificity
#
# For the skin tone the class name needs a noun to hang on. A ladder from the bare word to a full
# caption, with two rungs that are specific in the wrong way ("hand" names a body part that only some
# test pictures show, "woman" a gender that only some have). Three rungs are training captions for
# most tones ("person, dark skin tone" and "woman, dark skin tone" are emoji names), so each rung's
# count of training-caption prompts stands beside its score and its difference from the bare word.

# %%
LADDER = ['{}', '{} skin', '{} skin tone', 'person, {} skin tone', 'an emoji of person, {} skin tone.',
          'hand, {} skin tone', 'woman, {} skin tone']
ladder = template_sweep(model, tasks['skin_tone'], LADDER, features=features['skin_tone'])
ladder_hits = dict(zip(LADDER, template_predictions(features['skin_tone'][0],
                                                   template_embeddings(model, tasks['skin_tone'].classnames, LADDER)) == features['skin_tone'][1]))
vs_bare = {t: paired_bootstrap(ladder_hits[t], ladder_hits['{}'], n_boot=n_boot) for t in LADDER[1:]}
noun = vs_bare['person, {} skin tone']
display(Markdown('| template | prompts that are training captions | chance | majority class | top-1 | mean per-class recall | '
                 'rung − `{}` (points, 95% paired) |\n|---|---:|---:|---:|---:|---:|---:|\n' +
                 '\n'.join(f"| `{r['template']}` | {caps_of('skin_tone', [t])} | {pct(tasks['skin_tone'].chance)} | "
                           f"{pct(majority['skin_tone'])} | {pct(r['top1'])} | {pct(r['recall'])} | "
                           + (ci(vs_bare[t]) if t in vs_bare else '') + ' |' for r, t in zip(ladder, LADDER))))

# %%
#| echo: false
clean_rungs = [t for t in LADDER[1:] if not n_caps('skin_tone', [t])]
up = [t for t in clean_rungs if vs_bare[t]['lo'] > 0]
gains = [t for t in LADDER[1:] if vs_bare[t]['lo'] > 0]
display(Markdown(
    f"`person, {{}} skin tone` against the bare tone word `{{}}`, same pictures: {ci(noun)} points ("
    + ('beyond luck' if noun['excludes_zero'] else 'not distinguishable from luck')
    + f"), but {caps_of('skin_tone', ['person, {} skin tone'])} of its prompts are training captions. The rungs that fill "
      f"to no training caption ({', '.join(f'`{t}`' for t in clean_rungs)}) measure the noun alone: "
    + (f"{', '.join(f'`{t}`' for t in up)} beat{'s' if len(up) == 1 else ''} the bare word beyond luck"
       if up else "none of them beats the bare word beyond luck")
    + f" ({', '.join(f'`{t}` {ci(vs_bare[t])}' for t in clean_rungs)} points). "
    + (f"So on this model every rung that beats the bare word beyond luck ({', '.join(f'`{t}`' for t in gains)}) fills to "
       "training captions, and the noun alone shows no gain the test set can tell from luck."
       if gains and not up and all(n_caps('skin_tone', [t]) for t in gains) else
       "So a noun helps even where no prompt is a training caption." if up else
       "No rung beats the bare word beyond luck.")))

# %%
#| hide
if not in_test():
    assert noun['diff'] > 0 and all(r['top1'] > bar['skin_tone'] for r in ladder), noun   # every rung clears the majority class
    assert all(n_caps('skin_tone', [t]) == 4 for t in LADDER[3:5] + LADDER[6:]), LADDER   # "training captions for most tones"

# %% [markdown]
# ## Ensembling: how many templates?
#
# The paper averages in embedding space, for the reason [the zero-shot chapter](07_zeroshot.ipynb)
# quotes (one cached vector per class), and so do we here; the last section compares the other space.
#
# Two pools per task, each ensembled in random orders, a prefix at a time:
#
# * the dozen **paraphrases** above, all in the captions' language: the ensemble averages wording
#   among prompts that each fit; two of each dozen fill to training captions, so this ensemble is not
#   zero-shot (the table below adds the ensemble of the other ten, which is);
# * a dozen **generic photo templates** in the style of the paper's ImageNet ensemble ("a blurry
#   photo of a {}.", "a photo of a big {}.", ...), none of which fits emoji, and none of which fills
#   to a training caption: the paper's recipe carried over unchanged, zero-shot.

# %%
#| fig-cap: "Accuracy of prompt ensembles growing from 1 to 12 templates, for caption-style paraphrases (two of which fill to training captions) and for generic photo templates (none), over random orders of adding them; the dotted line is the majority class, which on the category task lies above the axis, above every point of both curves."
#| fig-alt: "Three line plots stacked one above the other, one per task, of top-1 accuracy against the number of templates in the ensemble, a green curve for the paraphrases and a blue one for the photo templates, each with shaded bands for the spread over random orders that narrow to a single point at 12 templates, where every order ends in the same ensemble; a dashed line marks chance and a dotted line the majority class. On the category task the majority class is far above the plotted range, which a note at the top of that panel says; both curves stay well below it. The tables below compare the single templates with the ensemble of all 12."
PHOTO_POOL = ['a photo of a {}.', 'a blurry photo of a {}.', 'a close-up photo of a {}.', 'a photo of a big {}.',
              'a photo of a small {}.', 'a cropped photo of a {}.', 'a low resolution photo of a {}.', 'a good photo of a {}.',
              'a photo of the {}.', 'a photo of my {}.', 'a photo of a nice {}.', 'an old photo of a {}.']
assert all(n_caps(a, PHOTO_POOL) == 0 for a in FAMILIES)                        # the photo pool is zero-shot on every task
POOLS = {'paraphrases': PARAPHRASES, 'photo templates': {a: PHOTO_POOL for a in FAMILIES}}
ORDERS = pick(gpu=50, cpu=50, test=3)
curves = {(a, pool): ensemble_curve(model, tasks[a], POOLS[pool][a], orders=ORDERS, features=features[a])
          for a in FAMILIES for pool in POOLS}

def summary(c: torch.Tensor) -> dict:
    "mean, std, min, max over orders of a curve [orders, T], per ensemble size."
    return dict(mean=c.mean(0).numpy(), std=c.std(0).numpy(), lo=c.min(0).values.numpy(), hi=c.max(0).values.numpy())

fig, axes = plt.subplots(3, 1, figsize=(8, 9.5), sharex=True)
for ax, a in zip(axes, FAMILIES):
    for pool, col in (('paraphrases', KIND_COLORS[CAPTIONS]), ('photo templates', KIND_COLORS['photo'])):
        s, k = summary(100 * curves[(a, pool)]), np.arange(1, curves[(a, pool)].shape[1] + 1)
        ax.fill_between(k, s['lo'], s['hi'], color=col, alpha=0.12, lw=0)
        ax.fill_between(k, s['mean'] - s['std'], s['mean'] + s['std'], color=col, alpha=0.3, lw=0)
        ax.plot(k, s['mean'], c=col, marker='o', ms=3, label=pool)
    ax.axhline(100 * tasks[a].chance, ls='--', c='k', lw=1, label='chance')
    lo, hi = ax.get_ylim()
    if 100 * majority[a] <= hi:
        ax.axhline(100 * majority[a], ls=':', c='k', lw=1.2, label='majority class'); ax.set_title(tasks[a].name, fontsize=11)
    else: ax.set_title(f"{tasks[a].name}\n(majority class {100 * majority[a]:.0f}%, above the axis)", fontsize=10)
    ax.set_xticks(k); ax.set_ylabel('top-1 accuracy (%)', fontsize=10); ax.tick_params(labelsize=10)
axes[-1].set_xlabel('templates in the ensemble', fontsize=10)
handles, labels = axes[1].get_legend_handles_labels()
fig.legend(handles, labels, loc='lower center', ncol=4, fontsize=10, frameon=False)
fig.suptitle(f'Ensembles of growing size: mean over {ORDERS} random orders,\n±1 sd (dark band), min–max (light band)', fontsize=11)
fig.tight_layout(rect=(0, 0.04, 1, 1)); plt.show()

# %%
#| hide
above = [a for a in FAMILIES if all(100 * majority[a] > summary(100 * curves[(a, p)])['hi'].max() for p in POOLS)]
if not in_test(): assert 'category' in above, above           # the caption's "above every point of both curves"

# %% [markdown]
# The first point of a curve is the average single template and its band the luck of the draw; moving
# right the bands narrow, because every order ends in the same full ensemble. Where a curve rises, the
# ensemble beats the *typical* template; on the category task every point of both curves lies below the
# majority class, so whatever a curve does there, it shows no skill at that task. Whether an ensemble
# beats the *best* template is a different question: the paper's 80 prompts were compared with its single default, not
# with the best of the 80 chosen on the test set.

# %%
POOLS_TABLE = {**{p: {a: POOLS[p][a] for a in FAMILIES} for p in POOLS},
               'paraphrases, no training caption': {a: [t for t in PARAPHRASES[a] if not n_caps(a, [t])] for a in FAMILIES}}
ens_rows = []
for pool, by_task in POOLS_TABLE.items():
    for a, temps in by_task.items():
        singles = [r['top1'] for r in template_sweep(model, tasks[a], temps, features=features[a])]
        feats, labels = features[a]
        E_pool = template_embeddings(model, tasks[a].classnames, temps)
        ens_hits = zero_shot_logits(feats, ensemble_weights(E_pool)).argmax(1) == labels
        first_hits = template_predictions(feats, E_pool[:1])[0] == labels      # the pool's first template, fixed beforehand
        ens_rows.append(dict(task=tasks[a].name, attr=a, pool=pool, T=len(temps), caps=caps_of(a, temps),
                             median=float(np.median(singles)), best=max(singles), ensemble=ens_hits.double().mean().item(),
                             first_template=dagger(a, temps[0]), first_caps=caps_of(a, temps[:1]),
                             vs_first=paired_bootstrap(ens_hits, first_hits, n_boot=n_boot),
                             vs_majority=against_majority(ens_hits, labels, n_boot=n_boot)))
for r in ens_rows:
    if (r['attr'], r['pool']) in curves:   # the table's ensemble is the curve's last point
        test_close(r['ensemble'], float(curves[(r['attr'], r['pool'])][0, -1]), eps=1e-9)
def versus(r) -> str: return r['vs_majority']['reading'].removesuffix(' the majority class').removesuffix(' from')
display(Markdown('| task, pool (templates) | prompts that are training captions | chance / majority class | median single template | '
                 'best single template | ensemble of all | ensemble vs majority class |\n'
                 '|---|---:|---:|---:|---:|---:|---|\n' +
                 '\n'.join(f"| {r['task']}, {r['pool']} ({r['T']}) | {r['caps']} | {pct(tasks[r['attr']].chance)} / "
                           f"{pct(majority[r['attr']])} | {pct(r['median'])} | {pct(r['best'])} | {pct(r['ensemble'])} | "
                           f"{versus(r)} |" for r in ens_rows)))
display(Markdown('| task, pool | first template | its prompts that are training captions | ensemble − first template (points, 95% paired) |\n'
                 '|---|---|---:|---:|\n' +
                 '\n'.join(f"| {r['task']}, {r['pool']} | `{r['first_template']}` | {r['first_caps']} | {ci(r['vs_first'])} |"
                           for r in ens_rows)
                 + '\n\n† the template fills to a training caption for some class.'))

# %%
#| hide
if not in_test():
    for r in ens_rows:   # the reading in the table is the data's; the kind of emoji stays below its majority class
        assert (r['vs_majority']['lo'] > 0) <= (r['ensemble'] > baseline(tasks[r['attr']].chance, majority[r['attr']])), r
        if r['attr'] == 'category': assert r['vs_majority']['reading'] == 'below the majority class', r


# %%
#| echo: false
def pool_rows(p): return [r for r in ens_rows if r['pool'] == p]
def zs(r) -> bool: return r['caps'].startswith('0 of')                       # no prompt of the pool is a training caption
beats = [f"{r['task']} ({r['pool']})" for r in ens_rows if r['vs_first']['lo'] > 0]
loses = [f"{r['task']} ({r['pool']}, {ci(r['vs_first'])} points)" for r in ens_rows if r['vs_first']['hi'] < 0]
caught_first = [r for r in pool_rows('paraphrases') if r['first_template'].endswith('†')]
display(Markdown(
    "Measured in this run, each ensemble against its pool's first template on the same pictures (the paper's comparison: "
    "its ensemble against its single default): "
    + '; '.join(f"{p} " + ', '.join(f"{ci(r['vs_first'])} points on {r['task']}" for r in pool_rows(p)) for p in POOLS_TABLE)
    + ". " + (f"The ensemble beats its first template beyond luck on {', '.join(beats)}. " if beats else
              "No ensemble beats its first template beyond luck. ")
    + (f"It loses to its first template beyond luck on {', '.join(loses)}. " if loses else
       "No ensemble loses to its first template beyond luck. ")
    + (f"The paraphrases' first template is itself a training caption on {names([r['attr'] for r in caught_first])} ("
       + ', '.join(f"{r['first_caps']} prompts" for r in caught_first)
       + "), so those rows compare an ensemble with prompts that are training captions, not with a zero-shot default; "
       if caught_first else '')
    + "the zero-shot comparisons, where neither side has a training-caption prompt, are the rows of the pools "
    + ' and '.join(f'"{p}"' for p in sorted({r['pool'] for r in ens_rows if zs(r) and r['first_caps'].startswith('0 of')})) + '. '
    + "The paper's ImageNet ensemble gained 3.5 points over its default."))

# %% [markdown]
# Two cautions, whatever the exact numbers. Ensembling averages what its members say and cannot add
# what none of them says: twelve sentences about photos average to a sentence about photos, whatever
# it scores on pictures that are not photos. And our text tower is small and its captions uniform, so its templates are not the
# many *independent* noisy views of one concept that make an average pay off: they share the same
# few tokens, and may well err together (this chapter does not measure how correlated their errors are).
#
# ## Scenes: where the prompt must invent details
#
# The photo pool above holds a big and a small version of one template, in the style of the paper's
# ImageNet ensemble (§3.1.4): prompts that differ in a detail the picture may not have. Procedural
# scenes make that literal. A scene caption names everything at
# once ("two small green triangles"), so a prompt for a colour must invent a shape and a size: "a
# small red circle" is a caption of the right form, but for a picture of large red stars it is wrong
# twice. The zero-shot chapter's scene tasks therefore use one template per (shape, size) for colour,
# per (colour, size) for shape, and per (size, colour, shape) for the count, and average them. Here
# they are taken apart, on the `scenes-tiny` model of the training chapter, trained on the scene
# descriptions in three templates (`{}`, `an emoji of {}.`, `a picture of {}.`). Filled in, every one
# of these detailed templates is a training caption of that model ("a small red circle"), so this
# section measures prompting with training captions, not zero-shot transfer; the zero-shot chapter's
# headline leaves the size out to get prompts that are no training caption.

# %%
scene_model = chapter_model('scenes-tiny')
N_SCENES = pick(gpu=400, cpu=400, test=40)
scene_tasks = {a: scene_task(a, n=N_SCENES, image_size=scene_model.visual.input_resolution) for a in ('color', 'shape', 'count')}
scene_rows = []
for a, t in scene_tasks.items():
    f = task_features(scene_model, t)
    own = np.array([r['top1'] for r in template_sweep(scene_model, t, features=f)])
    E = template_embeddings(scene_model, t.classnames, t.templates)
    each = template_predictions(f[0], E) == f[1]                                     # [T, N] per template
    ens_hits = zero_shot_logits(f[0], ensemble_weights(E)).argmax(1) == f[1]
    bare_hits = zero_shot_logits(f[0], ensemble_weights(template_embeddings(scene_model, t.classnames, ['{}']))).argmax(1) == f[1]
    base = template_sweep(scene_model, t, ['{}', 'a photo of a {}.'], features=f)
    ens = _scores(*f, ensemble_weights(template_embeddings(scene_model, t.classnames, t.templates)))['top1']
    scene_rows.append(dict(task=t.name, chance=t.chance, majority=majority_hits(f[1]).mean().item(), bare=base[0]['top1'],
                           photo=base[1]['top1'], n=len(own), C=len(t.classnames),
                           caps=[caption_prompts(t, x) for x in (['{}'], ['a photo of a {}.'], t.templates)],
                           example=template_text(t.templates[0]), lo=own.min(), med=float(np.median(own)), hi=own.max(), ensemble=ens,
                           vs_majority=against_majority(ens_hits, f[1], n_boot=pick(2000, 2000, test=200)),
                           gap=paired_bootstrap(each[int(own.argmax())], each[int(own.argmin())], n_boot=pick(2000, 2000, test=200)),
                           bare_vs_ensemble=paired_bootstrap(bare_hits, ens_hits, n_boot=pick(2000, 2000, test=200)),
                           bare_top1=bare_hits.double().mean().item()))
display(Markdown('| task | chance | majority class | `{}` | `a photo of a {}.` | detailed templates (first) | prompts that are training captions: `{}` / photo / detailed | single detailed template: min / median / max | ensemble of all |\n'
                 '|---|---:|---:|---:|---:|---|---:|---:|---:|\n' +
                 '\n'.join(f"| {r['task']} | {pct(r['chance'])} | {pct(r['majority'])} | {pct(r['bare'])} | {pct(r['photo'])} | {r['n']} (`{r['example']}`) | "
                           f"{r['caps'][0]} / {r['caps'][1]} of {r['C']}; {r['caps'][2]} of {r['n'] * r['C']} | "
                           f"{pct(r['lo'])} / {pct(r['med'])} / {pct(r['hi'])} | {pct(r['ensemble'])} |" for r in scene_rows)))

# %%
#| hide
if not in_test():
    assert scene_rows[0]['ensemble'] > 0.5 + baseline(scene_rows[0]['chance'], scene_rows[0]['majority']) / 2, scene_rows[0]   # colour: "known"
for r in scene_rows: test_close(r['bare_top1'], r['bare'], eps=1e-9)      # the paired interval's bare word is the table's


# %% [markdown]
# Read the table by rows. Below, an attribute counts as *known* when the ensemble's accuracy lies more
# than halfway from the majority class (the bar; never below chance) to always right.

# %%
#| echo: false
def skill(r) -> float:   # 0 at the majority class, 1 always right
    return (r['ensemble'] - baseline(r['chance'], r['majority'])) / (1 - baseline(r['chance'], r['majority']))
def attribute(r) -> str: return r['task'].removeprefix('scene ')
def against(r) -> str:
    v = r['vs_majority']
    return (f"{attribute(r)}: {pct(r['ensemble'])} against chance {pct(r['chance'])} and majority class {pct(r['majority'])}, "
            f"{v['reading']} ({100 * v['diff']:+.1f} points [{100 * v['lo']:+.1f}, {100 * v['hi']:+.1f}])")
def gap(r) -> str: return f"{attribute(r)} {100 * r['gap']['diff']:+.1f} [{100 * r['gap']['lo']:+.1f}, {100 * r['gap']['hi']:+.1f}]"
def span(r) -> str: return f"{attribute(r)} {pct(r['lo'])} to {pct(r['hi'])}"
known, partly = [r for r in scene_rows if skill(r) >= 0.5], [r for r in scene_rows if skill(r) < 0.5]
parts = []
def zero_shot_or_not(k: int) -> str: return 'zero-shot' if k == 0 else 'not zero-shot'
def bare(r) -> str:
    d = r['bare_vs_ensemble']
    return (f"{attribute(r)} {pct(r['bare'])} with `{{}}` ({r['caps'][0]} of its {r['C']} prompts training captions: "
            f"{zero_shot_or_not(r['caps'][0])}), {100 * d['diff']:+.1f} points [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] "
            f"against the ensemble's {pct(r['ensemble'])} ({r['caps'][2]} of its {r['n'] * r['C']} prompts training captions: "
            f"{zero_shot_or_not(r['caps'][2])}), "
            + ('above it beyond luck' if d['lo'] > 0 else 'below it beyond luck' if d['hi'] < 0 else 'not distinguishable from it'))
if known:
    no_gap = all(r['gap']['lo'] <= 0 for r in known)
    parts.append(f"Where the model knows the attribute ({'; '.join(map(against, known))}), single detailed templates span "
                 f"{', '.join(map(span, known))}; the best minus the worst on the same pictures is {', '.join(map(gap, known))} "
                 "points (95% paired bootstrap, the extremes picked after seeing the scores, so the interval overstates a "
                 "difference fixed in advance)"
                 + (": even the extremes are not distinguishable, so the invented details make no difference this run can detect. "
                    if no_gap else ": the extremes differ beyond luck on that interval, which is all this run can say of the "
                    "invented details. ")
                 + f"The bare word, set against the ensemble on the same pictures (a pair fixed in advance), scores "
                 + '; '.join(map(bare, known))
                 + (": a zero-shot prompt set against an ensemble of training captions, not two zero-shot prompts."
                    if all(r['caps'][0] == 0 and r['caps'][2] == r['n'] * r['C'] for r in known) else '.'))
if partly:
    inside = all(r['lo'] <= r['ensemble'] <= r['hi'] for r in partly)
    parts.append(f"Where it is less than halfway from the majority class to always right ({'; '.join(map(against, partly))}), single detailed templates span "
                 f"{', '.join(map(span, partly))}; the best minus the worst on the same pictures is {', '.join(map(gap, partly))} "
                 "points (95% paired bootstrap; picked as the extremes after seeing the scores, so the interval overstates a "
                 "difference fixed in advance), and the ensemble "
                 + ("lands among its members." if inside else "does not stay among its members on every task."))
display(Markdown(' '.join(parts)))


# %% [markdown]
# ## Embedding space or probability space
#
# The paper averages the *text embeddings* of a class's templates into one column of `W`. The
# alternative is to keep `T` classifiers, turn each one's logits into probabilities, and average those,
# the classic ensemble of models. `probability_ensemble` does the latter.

# %%
#| exports
def probability_ensemble(features: torch.Tensor, E: torch.Tensor, idx=None, scale: float = 100.0) -> torch.Tensor:
    "Probability-space ensemble: the mean over templates `idx` (default: all) of E [T, C, d] of each one's softmax, [N, C]."
    E = E if idx is None else E[list(idx)]
    return torch.stack([zero_shot_logits(features, e.T, scale).softmax(dim=-1) for e in E]).mean(dim=0)


# %% [markdown]
# The checks: with one template, or with the same template repeated, the probability ensemble is that
# template's softmax; and its rows are distributions.

# %%
feats_toy = F.normalize(torch.randn(6, E.shape[-1]), dim=-1)
single = zero_shot_logits(feats_toy, ensemble_weights(E, [1])).softmax(-1)
test_close(probability_ensemble(feats_toy, E, [1]), single, eps=1e-6)
test_close(probability_ensemble(feats_toy, E[[1, 1, 1]]), single, eps=1e-6)
test_close(probability_ensemble(feats_toy, E).sum(-1), torch.ones(6), eps=1e-5)

# %% [markdown]
# The two are different classifiers. Averaging embeddings is averaging *logits*, up to the per-class
# renormalisation (`I_e · Σ_t T_e` is the sum of the logits), and a softmax of a mean is not a mean
# of softmaxes: at a large scale each template's softmax is nearly one-hot and the probability
# ensemble becomes a vote of the templates; as the scale shrinks, the two converge. The cost differs in
# kind. The embedding ensemble is one `[d, C]` matrix whatever `T`, so per picture it costs what one
# template costs. The probability ensemble keeps `T` matrices and computes `T` logit vectors and `T`
# softmaxes for every picture, forever.
#
# Below, both on two pools: the paraphrases, and the zero-shot chapter's caption-form prompts (one
# per *training* emoji name, with the attribute left open: "woman health worker, {} skin tone"). A third
# rule, the nearest prompt (each class scored by its best-matching prompt, `nearest_prompt_logits`), is
# listed for reference; it costs what the probability ensemble costs. On the skin tone's caption forms
# it is close to caption retrieval, as the zero-shot chapter found: filled in, those prompts spell many
# test pictures' own captions, and the second table's last column counts them. Neither pool is
# zero-shot (filled in, the caption forms spell training captions and, on the skin tone, test
# pictures' own captions; two paraphrases of each dozen fill to a training caption; the first table
# counts the training-caption prompts): each row compares two ways of combining the
# same prompts, which it holds equal, not zero-shot accuracies.

# %%
learned_scale = model.logit_scale.detach().exp().item()
labels_of = {a: features[a][1] for a in FAMILIES}
space_rows = []
for a in FAMILIES:
    feats, labels = features[a]
    pools = {'paraphrases': PARAPHRASES[a]}
    if tasks[a].caption_templates: pools['caption forms'] = tasks[a].caption_templates[:pick(None, None, test=12)]   # all of them
    for pool, temps in pools.items():
        E_a = template_embeddings(model, tasks[a].classnames, temps)
        T_, C_, d_ = E_a.shape
        acc = lambda logits: (logits.argmax(1) == labels).double().mean().item()
        emb, prob = zero_shot_logits(feats, ensemble_weights(E_a)), probability_ensemble(feats, E_a)
        own = own_captions(Task(tasks[a].name, None, tasks[a].classnames, temps, captions=tasks[a].captions), 'ensemble')
        space_rows.append(dict(task=tasks[a].name, attr=a, pool=pool, T=T_, emb=acc(emb), prob=acc(prob), own=own, caps=caps_of(a, temps),
                               emb_prob=paired_bootstrap(emb.argmax(1) == labels, prob.argmax(1) == labels,
                                                         n_boot=pick(2000, 2000, test=200)),
                               prob_learned=acc(probability_ensemble(feats, E_a, scale=learned_scale)),
                               nearest=acc(torch.einsum('nd,tcd->nct', feats, E_a).amax(-1)),   # = nearest_prompt_logits
                               agree=(emb.argmax(1) == prob.argmax(1)).double().mean().item(),
                               n_emb=d_ * C_, n_prob=T_ * d_ * C_))
display(Markdown(f'| task, pool | prompts that are training captions | chance / majority class | embedding space | '
                 f'probability space, scale 100 | probability space, learned scale {learned_scale:.1f} | nearest prompt |\n'
                 '|---|---:|---:|---:|---:|---:|---:|\n' +
                 '\n'.join(f"| {r['task']}, {r['pool']} | {r['caps']} | {pct(tasks[r['attr']].chance)} / {pct(majority[r['attr']])} | "
                           f"{pct(r['emb'])} | {pct(r['prob'])} | {pct(r['prob_learned'])} | {pct(r['nearest'])} |" for r in space_rows)))
display(Markdown('| task, pool | T | embedding − probability (points, 95% paired) | same answer (pictures) | '
                 'numbers in the classifier, embedding vs probability | pictures whose own caption is a prompt |\n'
                 '|---|---:|---:|---:|---:|---:|\n' +
                 '\n'.join(f"| {r['task']}, {r['pool']} | {r['T']} | {ci(r['emb_prob'])} | {pct(r['agree'])} | "
                           f"{r['n_emb']:,} vs {r['n_prob']:,} | {r['own']} of {len(labels_of[r['attr']])} |" for r in space_rows)))

# %%
#| hide
if not in_test():   # the prose above: the caption forms spell training captions, and test pictures' own captions on the skin tone only
    form_rows = {r['attr']: r for r in space_rows if r['pool'] == 'caption forms'}
    assert form_rows['skin_tone']['own'] > 0 and all(r['own'] == 0 for a, r in form_rows.items() if a != 'skin_tone'), form_rows
    assert all(not r['caps'].startswith('0 of') for r in form_rows.values()), form_rows

# %% [markdown]
# Per picture, the embedding ensemble costs `d·C` multiply-adds and the probability ensemble `T·d·C`
# plus `T` softmaxes; the last column is the same ratio in stored numbers. A small timing on the
# paraphrase pool of the category task (noisy on a shared CPU):

# %%
feats_c = features['category'][0]
E_c = template_embeddings(model, tasks['category'].classnames, PARAPHRASES['category'])
W_c = ensemble_weights(E_c)
def best_of(f, reps=pick(20, 20, test=3)):
    times = []
    for _ in range(reps): t0 = time.perf_counter(); f(); times.append(time.perf_counter() - t0)
    return min(times)
t_emb, t_prob = best_of(lambda: zero_shot_logits(feats_c, W_c).argmax(1)), best_of(lambda: probability_ensemble(feats_c, E_c).argmax(1))
print(f"{len(feats_c)} pictures, {E_c.shape[0]} templates: embedding space {1e3 * t_emb:.2f} ms, probability space {1e3 * t_prob:.2f} ms "
      f"(ratio {t_prob / t_emb:.1f})")

# %%
#| echo: false
agree = [r['agree'] for r in space_rows]
differ = [r for r in space_rows if r['emb_prob']['excludes_zero']]
text = ("Measured in this run, embedding space against probability space on the same pictures: "
        + ', '.join(f"{ci(r['emb_prob'])} points on {r['task']} ({r['pool']})" for r in space_rows)
        + f". They give the same answer on {pct(min(agree))} to {pct(max(agree))} of the pictures, while the probability "
          "space stores and computes `T` times as much per picture. "
        + (f"They differ beyond luck on {', '.join(r['task'] + ' (' + r['pool'] + ')' for r in differ)}, where "
           + ', '.join(f"{'embedding' if r['emb_prob']['diff'] > 0 else 'probability'} space scores higher" for r in differ) + '. '
           if differ else "No difference is beyond luck, so the cheaper embedding space loses nothing measurable here. "))
sk = next((r for r in space_rows if r['attr'] == 'skin_tone' and r['pool'] == 'caption forms'), None)
if sk:
    text += (f"On the caption forms of the skin tone the nearest prompt scores {pct(sk['nearest'])} against "
             f"{pct(sk['emb'])} and {pct(sk['prob'])} for the averages, with {sk['own']} of {len(labels_of['skin_tone'])} "
             "pictures' own captions among the prompts: a caption-retrieval reading, not evidence about how the averages "
             "combine prompts.")
below = [r for r in space_rows if max(r['emb'], r['prob']) <= baseline(tasks[r['attr']].chance, majority[r['attr']])]
if below:
    text += (f" On {', '.join(sorted({r['task'] for r in below}))} both averages stay at or below the majority class "
             f"({', '.join(sorted({pct(majority[r['attr']]) for r in below}))}).")
display(Markdown(text))


# %% [markdown]
# `tests/test_prompts.py` checks the exported helpers on a random-weight MiniCLIP: a one-template
# ensemble is the single-template classifier, the sweep matches `evaluate` template by template, the
# ensemble curve starts at single templates and ends at the full ensemble whatever the order, and a
# probability ensemble of copies of one template is that template.
#
# ## What we measured
#
# Printed by the cells above, in this run: the template kinds against each other, with paired
# intervals; the spread over paraphrases; the ensemble against its typical and best member; the
# scenes; and embedding- against probability-space ensembles. Summary, where a † or a nonzero count
# marks prompts that are training captions, and only the rest are zero-shot scores:

# %%
def cell(a, kind) -> str:
    "Top-1 of the first template of `kind` on task `a`, with † when it fills to a training caption."
    t = first[a][kind]
    return pct(next(x['top1'] for x in rows if x['attr'] == a and x['template'] == template_text(t))) + (' †' if n_caps(a, [t]) else '')
SUMMARY_KINDS = ('bare', 'photo', CAPTIONS, CLEAN, 'mismatched')
display(Markdown('| task | chance | majority class | ' + ' | '.join(SUMMARY_KINDS) + ' |\n|---|' + '---:|' * (2 + len(SUMMARY_KINDS)) + '\n'
                 + '\n'.join(f"| {tasks[a].name} | {pct(tasks[a].chance)} | {pct(majority[a])} | "
                              + ' | '.join(cell(a, k) for k in SUMMARY_KINDS) + ' |' for a in FAMILIES)
                 + '\n\n† the template fills to a training caption for some class: a top-1 accuracy, not a zero-shot one.'))
display(Markdown('| task | paraphrases | chance | majority class | min | median | max |\n|---|---|---:|---:|---:|---:|---:|\n'
                 + '\n'.join(f"| {tasks[r['attr']].name} | {r['set']} ({r['caps']} training-caption prompts) | {pct(tasks[r['attr']].chance)} | "
                              f"{pct(majority[r['attr']])} | {pct(r['min'])} | {pct(r['median'])} | {pct(r['max'])} |" for r in para_sets)))
display(Markdown('| task, pool (training-caption prompts) | chance / majority class | median single | best single | ensemble | '
                 'ensemble vs majority class |\n|---|---:|---:|---:|---:|---|\n'
                 + '\n'.join(f"| {r['task']}, {r['pool']} ({r['caps']}) | {pct(tasks[r['attr']].chance)} / {pct(majority[r['attr']])} | "
                              f"{pct(r['median'])} | {pct(r['best'])} | {pct(r['ensemble'])} | {versus(r)} |"
                              for r in ens_rows)))
display(Markdown('| task | chance | majority class | bare | median detailed template | ensemble | detailed prompts that are training captions |\n'
                 '|---|---:|---:|---:|---:|---:|---:|\n'
                 + '\n'.join(f"| {r['task']} | {pct(r['chance'])} | {pct(r['majority'])} | {pct(r['bare'])} | {pct(r['med'])} | "
                              f"{pct(r['ensemble'])} | {r['caps'][2]} of {r['n'] * r['C']} |" for r in scene_rows)))
display(Markdown('| task, pool (training-caption prompts) | chance / majority class | embedding space | probability space | nearest prompt |\n'
                 '|---|---:|---:|---:|---:|\n'
                 + '\n'.join(f"| {r['task']}, {r['pool']} ({r['caps']}) | {pct(tasks[r['attr']].chance)} / {pct(majority[r['attr']])} | "
                              f"{pct(r['emb'])} | {pct(r['prob'])} | {pct(r['nearest'])} |" for r in space_rows)))
_ = footer()
