# %% [markdown]
# # Zero-shot classification
#
# > Turning class names into a classifier with the text encoder, prompt ensembling in embedding space, and the measurements that say how well it works: top-1, top-5, mean per-class recall, retrieval.

# %%
#| default_exp zeroshot

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import os
from pathlib import Path
from typing import Callable
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm
from PIL import Image
from clip_annotated.core import autocast, get_device, one_line
from clip_annotated.tokenizer import tokenize
from clip_annotated.readers import open_image

# %%
#| hide
import io, math, tempfile
from fastcore.test import test_eq, test_close, test_fail
from clip_annotated.core import footer, seed_everything, remove_scratch, scratch_dir
from clip_annotated.model import create_model

# %%
_ = seed_everything(0)


# %% [markdown]
# At the end of this chapter you can hand CLIP a list of class names and get a classifier, with no
# training example of any class, and measure it: top-1 and top-5 accuracy, mean per-class recall, chance
# and the majority-class baseline, and a paired interval for the difference of two classifiers on the
# same pictures. [Zero-shot on the book's tasks](07a_tasks.ipynb) applies it to the book's model on
# held-out emoji and procedural scenes; [Evaluation data sets](07b_evalsets.ipynb) reads the paper's
# benchmarks wherever their files are at hand. The retrieval metrics of [Retrieval](05f_retrieval.ipynb)
# (`retrieval_metrics`, the function the training report uses) belong to the same family.
#
# ## The idea
#
# > "For each dataset, we use the names of all the classes in the dataset as the set of potential text
# > pairings and predict the most probable (image, text) pair according to CLIP." (Radford et al.
# > 2021, §3.1.2)
#
# > "the image encoder is the computer vision backbone which computes a feature representation for the
# > image and the text encoder is a hypernetwork which generates the weights of a linear classifier
# > based on the text specifying the visual concepts that the classes represent." (§3.1.2)
#
# A linear classifier over unit image features $I_e$ is a matrix $W$ with one column per class, and it
# predicts $\arg\max_c I_e \cdot W_{:,c}$. CLIP's text tower writes $W$: column $c$ is the unit
# embedding of a sentence naming class $c$. The pre-training task (which caption goes with this
# picture?) becomes the classification task (which class name goes with this picture?) with nothing
# trained. The class names must be words the text tower knows in the sense the pictures have them,
# which is where prompts come in.
#
# The paper's default sentence is "A photo of a {label}." (§3.1.4; [prompt engineering](09_prompt_engineering.ipynb)
# quotes why and measures the choice), and it averages several:
#
# > "We construct the ensemble over the embedding space instead of probability space. This allows us
# > to cache a single set of averaged text embeddings so that the compute cost of the ensemble is the
# > same as using a single classifier amortized over many predictions." (§3.1.4)
#
# So a class gets several sentences ("a photo of a dog.", "a drawing of a dog.", ...), each sentence a
# unit embedding, and the class's column is their mean, normalised back to unit length: one vector
# per class, however many templates. With one template this is exactly the single-prompt classifier.

# %%
#| exports
def fill_template(template: str | Callable[[str], str], name: str) -> str:
    "The prompt for class `name`: a template is a string with '{}' or a function of the class name."
    return template(name) if callable(template) else template.format(name)

@torch.inference_mode()
def encode_texts(model, texts: list[str], batch_size: int = 256, device=None) -> torch.Tensor:
    "Unit text embeddings [n, d] (float32, CPU) of `texts`, in batches."
    device = get_device(device) if device is not None else next(model.parameters()).device
    ctx = getattr(model, 'context_length', 77)
    out = []
    for s in range(0, len(texts), batch_size):
        with autocast(device): e = model.encode_text(tokenize(texts[s:s + batch_size], context_length=ctx, truncate=True).to(device))
        out.append(F.normalize(e.float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.empty(0, model.text_projection.shape[1])

def zero_shot_classifier(model, classnames: list[str], templates, batch_size: int = 256, device=None) -> torch.Tensor:
    "Zero-shot weights [d, C]: per class, the mean of its templates' unit text embeddings, renormalised."
    if not classnames or not templates: raise ValueError("zero_shot_classifier needs at least one class name and one template")
    texts = [fill_template(t, c) for c in classnames for t in templates]                  # C·T sentences, class-major
    E = encode_texts(model, texts, batch_size, device).view(len(classnames), len(templates), -1)   # [C, T, d]
    return F.normalize(E.mean(dim=1), dim=-1).T                                   # [d, C]


# %% [markdown]
# The check: the classifier equals the same computation done naively, one class and one template
# at a time, each sentence tokenized and encoded alone. And with a single template, each column is
# that template's own text embedding.

# %%
m = create_model('MiniCLIP').eval()
classes, temps = ['cat', 'dog', 'red apple'], ['a photo of a {}.', 'an emoji of a {}.', '{}', lambda c: f'{c}!']
W = zero_shot_classifier(m, classes, temps)
with torch.no_grad():
    naive = []
    for c in classes:
        embs = [F.normalize(m.encode_text(tokenize([t(c) if callable(t) else t.format(c)], context_length=32)), dim=-1)[0] for t in temps]
        mean = sum(embs) / len(embs)
        naive.append(mean / mean.norm())
test_close(W, torch.stack(naive, dim=1), eps=1e-5)
test_eq(W.shape, (m.text_projection.shape[1], 3))
test_close(zero_shot_classifier(m, classes, ['{}']), encode_texts(m, classes).T, eps=1e-6)
print("classifier == the naive per-template computation;", tuple(W.shape), "column norms:",
      ', '.join(f"{v:.3f}" for v in W.norm(dim=0).tolist()))


# %% [markdown]
# ## Images, logits, metrics
#
# The image side is the same for every task: encode all pictures once, normalise, and multiply by $W$.
# `encode_images` runs a `DataLoader` over any dataset of (image, label) pairs, under
# `torch.inference_mode` and, on a GPU, autocast. The logits are scaled by 100, CLIP's largest
# logit scale (the smallest temperature, $\tau = 0.01$, that training allows), which changes no ranking
# but gives softmax probabilities of the usual sharpness.
#
# The paper reports top-1 accuracy for most sets, and mean per-class recall for the sets its Table 9
# marks with that metric (Pets, Caltech-101 and Flowers among them). The mean per-class
# recall weighs every class equally, so a classifier cannot score by favouring a frequent class; we
# report both, with top-5, and the chance level of each (1/C for top-1 and per-class recall under a
# uniform guess). Beside chance sits the *majority-class baseline*: the accuracy of always answering
# the most frequent class. On an unbalanced set it can be far above 1/C, and a top-1 below it says the
# classifier knows less than the class frequencies do (its mean per-class recall is one over the
# number of classes present, which is why that metric suits unbalanced sets).
#
# A reader that cannot open a picture may return `None` for it instead of stopping the run (the
# readers of your own folders and CSV files in [Your own pictures](07c_pictures.ipynb) do, and count
# what they skipped); `encode_images` leaves such items out, and the labels it returns are those of
# the pictures it encoded.

# %%
#| exports
def _collate_kept(batch: list):
    "Default collation of the items that are not None (pictures a reader skipped); None when nothing is left."
    batch = [b for b in batch if b is not None]
    return default_collate(batch) if batch else None

@torch.inference_mode()
def encode_images(model, dataset: Dataset, batch_size: int = 256, device=None, num_workers: int = 0,
                  progress: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    "(unit image embeddings [N, d] float32 on CPU, labels [N]) of a dataset of (image tensor, label) pairs; None items left out."
    device = get_device(device) if device is not None else next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, collate_fn=_collate_kept)
    feats, labels = [], []
    for batch in tqdm(loader, desc='encode images', disable=progress is False or (progress is None and len(loader) < 8),
                      leave=False):
        if batch is None: continue                                          # every item of this batch was skipped
        x, y = batch
        with autocast(device): e = model.encode_image(x.to(device, non_blocking=True))
        feats.append(F.normalize(e.float(), dim=-1).cpu()); labels.append(torch.as_tensor(y))
    if not feats: raise ValueError(f"no picture could be read: all {len(dataset)} items of {type(dataset).__name__} were skipped")
    return torch.cat(feats), torch.cat(labels)

def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict:
    "Top-k accuracies, mean per-class recall (classes present in `labels`), and the chance levels, as fractions."
    if not torch.isfinite(logits).all():                   # topk ranks NaN first: a broken model would score well
        raise ValueError("the logits hold NaN or infinite values (a diverged model?): accuracy cannot be measured")
    n, C = logits.shape
    ranked = logits.topk(min(max(ks), C), dim=1).indices                      # [n, k]
    hit = ranked == labels[:, None]
    out = {f'top{k}': hit[:, :k].any(1).double().mean().item() for k in ks}
    pred = ranked[:, 0]
    present = labels.unique()
    out['mean_per_class_recall'] = torch.stack([(pred[labels == c] == c).double().mean() for c in present]).mean().item()
    out.update({f'chance_top{k}': min(k, C) / C for k in ks}, n=n, classes=C)
    counts = torch.bincount(labels, minlength=C)                           # pictures per class
    out.update(majority_top1=counts.max().item() / n, majority_class=int(counts.argmax()))   # always the most frequent
    return out

def zero_shot_logits(image_features: torch.Tensor, classifier: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    "Logits [N, C] of unit image features [N, d] against a zero-shot classifier [d, C]."
    return scale * image_features.float() @ classifier.float()


# %% [markdown]
# Metrics on logits made by hand, where the answers are known:

# %%
logits = torch.tensor([[5., 1., 0.], [0., 2., 3.], [1., 0., 4.], [3., 2., 1.], [0., 1., 0.5]])
labels = torch.tensor([0, 1, 2, 1, 1])
r = classification_metrics(logits, labels, ks=(1, 2))
# predictions 0, 2, 2, 0, 1: right on items 0, 2, 4; top-2 adds items 1 and 3
test_eq((r['top1'], r['top2']), (3 / 5, 1.0))
test_close(r['mean_per_class_recall'], (1 + 1 / 3 + 1) / 3)       # class 1 has 3 items, 1 right
test_eq((r['chance_top1'], r['chance_top2'], r['n'], r['classes']), (1 / 3, 2 / 3, 5, 3))
test_eq((r['majority_class'], r['majority_top1']), (1, 3 / 5))    # class 1 holds 3 of the 5 pictures
test_fail(lambda: classification_metrics(torch.full((2, 3), float('nan')), torch.tensor([0, 1])), contains='NaN')  # never a score
print(f"top-1 {r['top1']:.0%}, top-2 {r['top2']:.0%}, mean per-class recall {r['mean_per_class_recall']:.1%}; "
      f"chance {r['chance_top1']:.1%} (top-2 {r['chance_top2']:.1%}); majority class {r['majority_top1']:.0%} "
      f"(always answering class {r['majority_class']})")


# %% [markdown]
# Two ways of classifying pictures are compared on the *same* pictures. A difference of a
# few points on a few hundred pictures is a handful of pictures, and it may be luck: which pictures
# happened to be in the test set. `paired_bootstrap` puts an interval on it: it resamples the pictures
# with replacement, the same resample for both ways, recomputes the difference of their accuracies,
# and takes the middle `level=0.95` of `n_boot=2000` such differences. An interval that includes zero
# means the test set cannot tell the two apart.
#
# "The middle" needs a rule, and every bootstrap interval in this book uses this one,
# `percentile_interval`: of the sorted replicates it takes the smallest one at or above the `(1 - level) / 2`
# mark and the smallest at or above the `(1 + level) / 2` mark (NumPy's `inverted_cdf`), with no
# interpolation between replicates, so an interval's ends are always values some replicate took, and a
# replicate may be infinite.

# %%
#| exports
def percentile_interval(samples, level: float = 0.95) -> tuple[float, float]:
    "The central `level` interval of bootstrap replicates `samples`: the book's one quantile rule (`inverted_cdf`, no interpolation, so infinite values are allowed)."
    samples = np.asarray(samples, dtype=float).ravel()
    if not len(samples) or np.isnan(samples).any(): raise ValueError(f"percentile_interval needs replicates without NaN, got {len(samples)} with {int(np.isnan(samples).sum())} NaN")
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], method='inverted_cdf')
    return float(lo), float(hi)

def paired_bootstrap(correct_a, correct_b, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    "Accuracy difference a − b of two per-picture correctness vectors [N] on the same pictures, with a paired bootstrap interval (the pictures resampled once for both)."
    a, b = torch.as_tensor(correct_a).double(), torch.as_tensor(correct_b).double()
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired_bootstrap needs two 1-d vectors of the same non-zero length, got {tuple(a.shape)} and {tuple(b.shape)}")
    idx = torch.randint(len(a), (n_boot, len(a)), generator=torch.Generator().manual_seed(seed))   # resampled pictures
    d = a[idx].mean(1) - b[idx].mean(1)                                                           # [n_boot]
    lo, hi = percentile_interval(d.numpy(), level)
    return dict(diff=(a.mean() - b.mean()).item(), lo=lo, hi=hi, excludes_zero=lo > 0 or hi < 0, n=len(a))


# %%
test_eq(percentile_interval(np.arange(1, 41), level=0.9), (2.0, 38.0))     # the 5% and 95% marks of 40: the 2nd and 38th
test_eq(percentile_interval([0.0, 1.0, 2.0, math.inf] * 10, level=0.9), (0.0, math.inf))   # an interval may be open
test_fail(lambda: percentile_interval([1.0, float('nan')]), contains='without NaN')
same = paired_bootstrap([1, 0, 1, 1], [1, 0, 1, 1])
test_eq((same['diff'], same['lo'], same['hi'], same['excludes_zero']), (0.0, 0.0, 0.0, False))
three = paired_bootstrap(np.ones(380) - (np.arange(380) < 3), np.ones(380))                   # 3 pictures of 380 lost
assert three['diff'] < 0 and three['hi'] <= 0 and three['lo'] < three['diff'], three
big = paired_bootstrap((np.arange(400) < 100).astype(float), np.zeros(400))                      # 100 of 400 gained
assert big['excludes_zero'] and big['lo'] > 0.2, big
test_fail(lambda: paired_bootstrap([1, 0], [1]), contains='same non-zero length')


# %% [markdown]
# One proportion on its own (an accuracy, a recall at 1) whose per-picture hits are no longer at hand
# gets Wilson's score interval instead, computed from the count and the number of pictures. Unlike the
# textbook p ± 1.96·se it stays inside [0, 1] and keeps a sensible width near 0 and 1 and for small
# counts. <!-- fixed: 1.96 -->

# %%
#| exports
def wilson_interval(k: float, n: int, level: float = 0.95) -> tuple[float, float]:
    "Wilson's score interval (lo, hi) for a proportion of k successes in n trials."
    if n <= 0: raise ValueError(f"wilson_interval needs at least one trial, got n={n}")
    z = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor((1 + level) / 2)))
    p, d = k / n, 1 + z * z / n
    mid, half = (p + z * z / (2 * n)) / d, z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / d
    return max(0.0, min(p, mid - half)), min(1.0, max(p, mid + half))      # it always holds p: keep float rounding from moving 0 or 1 out


# %%
def textbook_interval(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    "p ± z·se with se = sqrt(p(1 − p)/n), clipped to [0, 1]: the interval Wilson's replaces."
    p = k / n; half = z * (p * (1 - p) / n) ** 0.5
    return max(0.0, p - half), min(1.0, p + half)

for k, n in ((0, 10), (81, 263)):
    (tlo, thi), (wlo, whi) = textbook_interval(k, n), wilson_interval(k, n)
    print(f"{k} of {n} ({k / n:.3f}): p ± 1.96·se [{tlo:.3f}, {thi:.3f}], Wilson [{wlo:.3f}, {whi:.3f}]")
test_eq(textbook_interval(0, 10), (0.0, 0.0))                                 # se = 0 at p = 0: a zero-width interval
test_close(wilson_interval(0, 10), (0.0, 0.2775), eps=1e-4)                 # 0 of 10: Wilson's keeps a width
test_close(wilson_interval(5, 10), (0.2366, 0.7634), eps=1e-4)
test_close(wilson_interval(81, 263), (0.2553, 0.3662), eps=1e-4)            # inside [0, 1], around 81 / 263 = 0.308
test_fail(lambda: wilson_interval(0, 0), contains='at least one trial')
assert wilson_interval(0, 13)[0] == 0.0 and wilson_interval(21, 21)[1] == 1.0   # all or nothing: the end is exact


# %% [markdown]
# ## The bar an accuracy must clear
#
# Chance (one over the number of classes) is the score of a uniform guess; the majority-class
# baseline is the score of a classifier that knows only the class frequencies. The second is never
# below the first (the most frequent of `C` classes holds at least a `C`-th of the pictures), so the
# bar a zero-shot classifier must clear is the majority class, and on an unbalanced task it can be far
# above chance. `baseline` names that bar; `against_majority` compares a classifier with it on the same
# pictures, a paired bootstrap of its per-picture correctness against that of always answering the
# most frequent class, and says the result in words. Every verdict in the book's zero-shot chapters
# goes through these two, so a task below its majority class is said to be so, never counted as a
# success for beating chance.

# %%
#| exports
def baseline(chance: float, majority: float) -> float:
    "The accuracy a classifier must beat to know more than the class frequencies: the larger of chance and the majority class."
    return max(chance, majority)

def majority_hits(labels: torch.Tensor) -> torch.Tensor:
    "Per-picture correctness [N] (float) of always answering the most frequent class of `labels`."
    labels = torch.as_tensor(labels)
    return (labels == torch.bincount(labels).argmax()).double()

def majority_reading(d: dict) -> str:
    "In words, what a paired interval of accuracy − majority class (from `against_majority`) shows."
    return ('above the majority class' if d['lo'] > 0 else 'below the majority class' if d['hi'] < 0
            else 'not distinguishable from the majority class')

def against_majority(correct, labels, n_boot: int = 2000, seed: int = 0) -> dict:
    "Accuracy − majority-class baseline on the same pictures, with a paired bootstrap interval and its reading in words."
    d = paired_bootstrap(torch.as_tensor(correct).double(), majority_hits(labels), n_boot=n_boot, seed=seed)
    return {**d, 'reading': majority_reading(d)}


# %% [markdown]
# The checks: on the five hand-made pictures above (three of class 1), always answering class 1 scores
# the majority baseline; a classifier right on every picture is above it, one that is right only on
# the two minority pictures is below it, and one that copies the majority class cannot be told from it.

# %%
test_eq(majority_hits(labels).mean().item(), r['majority_top1'])
test_eq(baseline(r['chance_top1'], r['majority_top1']), r['majority_top1'])
many = labels.repeat(40)                                        # 200 pictures with the same class frequencies
test_eq(against_majority(torch.ones(200), many)['reading'], 'above the majority class')
test_eq(against_majority((many != 1).double(), many)['reading'], 'below the majority class')
test_eq(against_majority(majority_hits(many), many)['reading'], 'not distinguishable from the majority class')
assert r['top1'] <= baseline(r['chance_top1'], r['majority_top1'])   # the hand-made classifier does not beat the bar


# %% [markdown]
# `evaluate` puts the pieces together for a dataset of (image, label) pairs and its class names;
# `predict` ranks labels for one picture, as `clip.load` users do in OpenAI's README, with CLIP's own
# learned scale in the softmax; a file that does not decode as a picture (cut short, unreadable, a
# decompression bomb) is a `ValueError` that names it.

# %%
#| exports
def evaluate(model, dataset: Dataset, classnames: list[str], templates=('{}',), batch_size: int = 256,
             device=None, num_workers: int = 0, progress: bool | None = None, ks=(1, 5)) -> dict:
    "Zero-shot metrics of `model` on `dataset` ((image, label) pairs) with `classnames` and `templates`."
    feats, labels = encode_images(model, dataset, batch_size, device, num_workers, progress)
    W = zero_shot_classifier(model, classnames, templates, batch_size, device)
    m = classification_metrics(zero_shot_logits(feats, W), labels, ks=tuple(k for k in ks if k <= len(classnames)) or (1,))
    return {**m, 'majority_class_name': classnames[m['majority_class']]}

@torch.inference_mode()
def read_picture(path) -> Image.Image:
    "The picture at `path`, or a one-line error naming it (missing, or not a picture that can be read)."
    if not Path(path).is_file(): raise FileNotFoundError(f"no picture at {path}")
    try: return open_image(path)
    except Exception as e: raise ValueError(f"{path} is not a picture that can be read ({one_line(e)})") from None

def predict(model, preprocess, image, labels: list[str], templates=('{}',), device=None) -> list[tuple[str, float]]:
    "[(label, probability)] for one picture (a PIL image or a path), most probable first."
    if not labels: raise ValueError("predict needs at least one label")
    if isinstance(image, (str, os.PathLike)): image = read_picture(image)
    device = get_device(device) if device is not None else next(model.parameters()).device
    x = preprocess(image).unsqueeze(0).to(device)
    with autocast(device): e = F.normalize(model.encode_image(x).float(), dim=-1).cpu()
    W = zero_shot_classifier(model, labels, templates, device=device)
    probs = (model.logit_scale.exp().float().cpu() * e @ W).softmax(dim=-1)[0]
    if not torch.isfinite(probs).all():
        raise ValueError("the model gives NaN or infinite scores (a diverged model?): no prediction can be made")
    return sorted(zip(labels, probs.tolist()), key=lambda p: -p[1])


# %% [markdown]
# The check: a toy set of six random pictures whose second and fifth items could not be read. Those
# two are left out, the labels stay with their pictures, and the majority baseline counts the four
# that remain (two of class 'a').

# %%
class _Toy(Dataset):
    "Six random pictures with labels 0, 0, 0, 1, 2, 2; items 1 and 4 unreadable (None)."
    def __init__(self, n_px): self.x, self.y = torch.randn(6, 3, n_px, n_px), [0, 0, 0, 1, 2, 2]
    def __len__(self): return 6
    def __getitem__(self, i): return None if i in (1, 4) else (self.x[i], self.y[i])

toy = _Toy(m.visual.input_resolution)
feats, labels = encode_images(m, toy, batch_size=4)
test_eq(labels.tolist(), [0, 0, 1, 2]); test_eq(feats.shape[0], 4)
with torch.no_grad(): test_close(feats[2], F.normalize(m.encode_image(toy.x[3:4]), dim=-1)[0], eps=1e-5)
r = evaluate(m, toy, ['a', 'b', 'c'])
test_eq((r['n'], r['majority_top1'], r['majority_class_name']), (4, 0.5, 'a'))
test_fail(lambda: encode_images(m, [None, None]), contains='all 2 items')
buf = io.BytesIO(); Image.new('RGB', (32, 32), 'red').save(buf, format='JPEG')
cut = scratch_dir() / 'cut.jpg'; cut.write_bytes(buf.getvalue()[:200])      # a picture cut short
test_fail(lambda: predict(m, lambda im: torch.zeros(3, 8, 8), cut, ['a']), contains='cut.jpg is not a picture that can be read')
print(f"{r['n']} pictures kept: top-1 {r['top1']:.0%}, chance {r['chance_top1']:.1%}, majority class {r['majority_top1']:.0%} "
      f"(always answering {r['majority_class_name']!r})")

# %% [markdown]
# ## The paper's benchmarks
#
# With OpenAI's released weights (`clip_annotated.load('ViT-B/32')`) and a benchmark's files on disk,
# the same `evaluate` reproduces the paper's zero-shot figures; [Evaluation data sets](07b_evalsets.ipynb)
# reads CIFAR, STL-10, Pets, Caltech-101, Food-101 and ImageNet with their class names and the
# templates OpenAI published, and lists the paper's numbers beside what was measured where the data
# was at hand. From the command line:
#
# ```sh
# clip-annotated eval --model ViT-B/32 --dataset cifar10 --root ~/data/cifar10
# clip-annotated eval --model runs/mini --dataset emoji-skin-tone
# clip-annotated eval --model ViT-B/32 --data my_photos/ --template 'a photo of a {}.'   # a folder per class
# clip-annotated predict picture.png "a dog" "a cat" "a red apple"
# ```
#
# `tests/test_zeroshot.py` checks the classifier against a naive per-template loop on a trained model,
# the metrics on hand-made logits, and `eval`/`predict` end to end on a checkpoint of a short training
# run; the benchmark chapter times `evaluate` against open_clip's zero-shot utilities on the same model
# and pictures, after checking that both predict the same classes.
#
# ## What comes next
#
# This chapter built the classifier and its measurements and checked them on toy inputs. The next
# chapter, [Zero-shot on the book's tasks](07a_tasks.ipynb), puts them to work on the book's own model:
# held-out emoji (skin tone, gender presentation, kind of emoji) and procedural scenes (colour, shape,
# count), with one template against the ensemble, chance and the majority-class baseline beside each
# accuracy.

# %%
_ = remove_scratch()
_ = footer()
