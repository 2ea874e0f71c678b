# %% [markdown]
# # Linear probes
#
# > Logistic regression on frozen CLIP features, with the regularisation chosen on a validation split as in the paper's Appendix A.3, and the question of the paper's Figure 7 asked of our model: how many labeled examples per class is zero-shot worth?

# %%
#| default_exp probe

# %%
#| hide
import warnings; warnings.filterwarnings('ignore', message='IProgress not found')
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import copy, math, warnings
from dataclasses import dataclass, field
import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from torch.utils.data import Dataset
from clip_annotated.core import markdown_table
from clip_annotated.tasks import Task, zero_shot_templates
from clip_annotated.zeroshot import encode_images, percentile_interval, zero_shot_classifier, zero_shot_logits

# %%
#| hide
import re, time
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from fastcore.test import test_eq, test_close, test_fail
from clip_annotated.core import footer, in_test, pick, seed_everything
from clip_annotated.data import TONES, emoji_records
from clip_annotated.run import book_model
from clip_annotated.tasks import emoji_task
from clip_annotated.zeroshot import baseline

# %%
_ = seed_everything(0)


# %% [markdown]
# At the end of this chapter you can put a linear classifier on top of any frozen image encoder of
# this book, fitted the way the paper fits its 1782 linear probes, and you can measure what a
# zero-shot classifier is worth in labeled examples: train probes on 1, 2, 4, 8, ... labeled pictures
# per class and read off where their accuracy meets the zero-shot accuracy.
#
# ```{mermaid}
# flowchart LR
#   D["held-out pictures"] --> E["frozen image encoder<br/>unit features [N, d]"]
#   E --> S["stratified split<br/>probe-train / probe-val / probe-test"]
#   S --> K["k per class<br/>(several draws)"] --> P["logistic regression<br/>C chosen on probe-val"]
#   S --> P
#   P --> A["accuracy on probe-test"]
#   T["class names → text encoder"] --> Z["zero-shot W [d, C]"] --> A
# ```
#
# ## Why a linear probe
#
# > "Fitting a linear classifier on a representation extracted from the model and measuring its
# > performance on various datasets is a common approach." (Radford et al. 2021, §3.2)
#
# > "Linear classifiers, because of their limited flexibility, instead highlight these failures and
# > provide clear feedback during development." (§3.2)
#
# The image encoder stays frozen: its features are computed once, and a multinomial logistic
# regression learns one weight vector per class on them. A probe asks what the features *contain*;
# the zero-shot classifier asks what the text tower can *say* about them. Since the zero-shot
# classifier is also linear in the same features (one column of $W$ per class, as in the zero-shot
# chapter), the two are directly comparable: same features, same kind of decision rule, different
# source of the weights, labeled pictures or class names.
#
# The paper takes its probe features from the layer before the projection for its ViTs (Appendix
# A.3). We use the unit joint-space embeddings that `encode_images` returns, the space in which the
# zero-shot classifier lives, so that "the same feature space" holds exactly.
#
# ## The protocol
#
# Appendix A.3 of the paper (Radford et al. 2021), in short and paraphrased: scikit-learn's logistic regression with the
# L-BFGS solver and at most 1,000 iterations; the L2 regularisation strength $\lambda$ swept over
# $10^{-6}$ to $10^{6}$ on a validation split, by a parametric search that starts from every second
# decade and halves the interval around the best value until it reaches 8 steps per decade; then the
# model is refit on train and validation together, and the accuracy reported on the unused split.
#
# We do the same with two simplifications. A single sweep over a fixed log-spaced grid of
# scikit-learn's `C` (the *inverse* regularisation strength, $C = 1/\lambda$: scikit-learn minimises
# $\frac12\lVert w\rVert^2 + C\sum_i \mathrm{loss}_i$) with two steps per decade, no refinement: on
# sets of a few hundred pictures, accuracy differences between neighbouring grid points are a picture
# or two, and a finer search would mostly fit the noise of the validation split. And a narrower range:
# `C` from $10^{-2}$ to $10^{4}$ ($\lambda$ from $10^{-4}$ to $10^{2}$), six decades where the paper
# searches twelve, to keep the sweep cheap (one fit per grid value, for every probe of the chapter). The
# price is that the best `C` may lie outside the grid, so the chapter prints where the chosen `C`
# falls: at an end of the grid, the sweep was cut short.
#
# First, the features: `encode_images` from the zero-shot chapter, as NumPy arrays for scikit-learn.

# %%
#| exports
def extract_features(model, dataset: Dataset, batch_size: int = 256, device=None) -> tuple[np.ndarray, np.ndarray]:
    "Frozen image features of (image, label) pairs: (unit embeddings [N, d] float32, labels [N] int64), as NumPy arrays."
    feats, labels = encode_images(model, dataset, batch_size=batch_size, device=device, progress=False)
    return feats.numpy(), labels.numpy().astype(np.int64)


# %% [markdown]
# Then the splits. The held-out pictures are the only data a probe may see, so they are cut three ways,
# *per class* (stratified) so that every part has every class in its proportion, with a fixed seed:
# `probe-train` (where the labeled examples come from), `probe-val` (where `C` is chosen) and
# `probe-test` (touched once, for the reported number). A k-shot training set is exactly `k` pictures
# of every class, drawn from probe-train without replacement.

# %%
#| exports
def stratified_split(labels, fractions=(0.5, 0.2, 0.3), seed: int = 0) -> list[np.ndarray]:
    "Sorted indices of disjoint parts of `labels`, every class cut in the proportions `fractions` (shuffled by `seed`)."
    labels, fr = np.asarray(labels), np.asarray(fractions, dtype=float)
    if (fr <= 0).any() or abs(fr.sum() - 1) > 1e-6: raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts = [[] for _ in fr]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        chunks = np.split(idx, np.round(np.cumsum(fr)[:-1] * len(idx)).astype(int))
        if any(len(ch) == 0 for ch in chunks):
            raise ValueError(f"class {c} has {len(idx)} examples: too few to cut in proportions {tuple(fractions)}")
        for p, ch in zip(parts, chunks): p.append(ch)
    return [np.sort(np.concatenate(p)) for p in parts]


# %%
#| exports
def sample_k_shot(labels, k: int, seed=0) -> np.ndarray:
    "Sorted indices of exactly `k` examples of every class present in `labels`, drawn without replacement."
    labels, rng = np.asarray(labels), np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < k: raise ValueError(f"class {c} has {len(idx)} examples, fewer than k={k}")
        out.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(out))


# %%
y = np.repeat(np.arange(3), [10, 20, 30])
tr, va, te = stratified_split(y, seed=0)
print("part sizes per class:", [np.bincount(y[p]).tolist() for p in (tr, va, te)])
test_eq(sorted(np.concatenate([tr, va, te]).tolist()), list(range(60)))       # disjoint, and they cover everything
test_eq(np.bincount(y[tr]).tolist(), [5, 10, 15])
idx = sample_k_shot(y[tr], 4, seed=1)
test_eq(np.bincount(y[tr][idx]).tolist(), [4, 4, 4])
test_eq(idx, sample_k_shot(y[tr], 4, seed=1))                                  # same seed, same draw
test_fail(lambda: sample_k_shot(y[tr], 6), contains='fewer than k=6')

# %% [markdown]
# ## The probe and its regularisation sweep
#
# `fit_linear_probe` fits one logistic regression per value of `C` on the training features and keeps
# the one with the best validation accuracy (on a tie, the smaller `C`, the stronger regularisation).
# It never sees a test set. `train_linear_probe` follows the paper's recipe to the end (choose `C`,
# refit on train and validation together), and `linear_probe_accuracy` adds the one measurement on
# test.
# With few examples the classes are often separable, the unregularised optimum is at infinity, and
# L-BFGS stops at its iteration limit; that is the regime the small `C` values are for, and the
# convergence warning says nothing the validation accuracy does not, so we silence it. The sweep runs
# from the smallest `C` up and starts every fit from the previous solution, and the refit on train +
# validation starts from the chosen weights (warm starts). Where the solver converges, that changes
# only the time it takes, not the optimum, up to its tolerance; where it stops at its iteration limit
# (few examples, a large `C`), it also changes where it stops, so such a probe's weights depend a
# little on the path through the sweep.

# %%
#| exports
DEFAULT_CS = tuple(float(c) for c in np.logspace(-2, 4, 13))   # C = 0.01 ... 10^4, two steps per decade

def fit_linear_probe(train_feats, train_labels, val_feats, val_labels, Cs=None,
                     max_iter: int = 1000) -> tuple[LogisticRegression, float, dict[float, float]]:
    "(classifier fit on train with the best C of `Cs` (None: `DEFAULT_CS`), that C, {C: validation accuracy}): C chosen on validation only."
    if len(np.unique(train_labels)) < 2: raise ValueError("a probe needs training examples of at least two classes")
    Cs = DEFAULT_CS if Cs is None else Cs
    clf = LogisticRegression(max_iter=max_iter, warm_start=True)   # each C starts from the previous C's weights
    best, val_acc = None, {}
    for C in sorted(Cs):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', ConvergenceWarning)
            clf.set_params(C=C).fit(train_feats, train_labels)
        val_acc[C] = float((clf.predict(val_feats) == np.asarray(val_labels)).mean())
        if best is None or val_acc[C] > val_acc[best[1]]: best = (copy.deepcopy(clf).set_params(warm_start=False), C)
    return best[0], best[1], val_acc


# %%
#| exports
def train_linear_probe(train_feats, train_labels, val_feats, val_labels, Cs=None,
                       max_iter: int = 1000) -> tuple[LogisticRegression, float, dict[float, float]]:
    "Appendix A.3's recipe: C chosen on validation, then (classifier refit on train + validation, C, {C: validation accuracy})."
    best, C, val_acc = fit_linear_probe(train_feats, train_labels, val_feats, val_labels, Cs, max_iter)
    clf = copy.deepcopy(best).set_params(warm_start=True)          # start the refit from the chosen weights
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        clf.fit(np.concatenate([train_feats, val_feats]), np.concatenate([train_labels, val_labels]))
    return clf.set_params(warm_start=False), C, val_acc


# %%
#| exports
def linear_probe_accuracy(train_feats, train_labels, val_feats, val_labels, test_feats, test_labels,
                          Cs=None, max_iter: int = 1000) -> dict:
    "The whole protocol: `train_linear_probe`, then the accuracy on test (with the C, the sweep, the classifier and its right answers)."
    clf, C, val_acc = train_linear_probe(train_feats, train_labels, val_feats, val_labels, Cs, max_iter)
    correct = clf.predict(test_feats) == np.asarray(test_labels)          # [N_test] bool
    return dict(acc=float(correct.mean()), C=C, val_acc=val_acc, classifier=clf, n_fit=len(train_labels) + len(val_labels),
                correct=correct)


# %% [markdown]
# ### Toy first
#
# Four classes in 32 dimensions. The class means differ a lot along four directions where the noise
# is large, and a little along the other 28, where it is small; features are normalised to unit
# length like CLIP's. The informative directions are the quiet ones, and a classifier has to learn to
# weigh them up: that takes labeled examples and a weak enough regularisation.

# %%
def toy_features(n_per_class: int, seed: int):
    "Unit features of 4 classes: means differ along 4 loud and 28 quiet directions (noise std 1.5 and 0.1)."
    r = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), n_per_class)
    x = toy_means[y] + r.standard_normal((len(y), 32)) * toy_noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y

rng = np.random.default_rng(0)
toy_means = np.concatenate([rng.standard_normal((4, 4)), 0.3 * rng.standard_normal((4, 28))], axis=1)   # [C, d]
toy_noise = np.array([1.5] * 4 + [0.1] * 28)
(Xtr, ytr), (Xva, yva), (Xte, yte) = toy_features(20, 1), toy_features(20, 2), toy_features(200, 3)
toy = linear_probe_accuracy(Xtr, ytr, Xva, yva, Xte, yte)
toy_chance, toy_majority = 1 / 4, np.bincount(yte).max() / len(yte)      # balanced: every class a quarter of the test set
print(f"toy probe: C = {toy['C']:g} (grid value {DEFAULT_CS.index(toy['C']) + 1} of {len(DEFAULT_CS)}), validation accuracy "
      f"{toy['val_acc'][toy['C']]:.1%}, test accuracy {toy['acc']:.1%} (chance {toy_chance:.1%}, majority class {toy_majority:.1%})")
print("validation accuracy per C:", ', '.join(f"{C:.3g}: {a:.0%}" for C, a in toy['val_acc'].items()))
assert toy['C'] in DEFAULT_CS and toy['acc'] > 0.9 and toy_majority == toy_chance
assert DEFAULT_CS.index(toy['C']) >= len(DEFAULT_CS) - 3      # "near the top of the grid"
assert all(a == toy['val_acc'][toy['C']] for C, a in toy['val_acc'].items() if C > toy['C'])   # "every larger C scores the same"

# %% [markdown]
# Validation accuracy against `C` on the toy problem (printed above, drawn below): a small `C` keeps
# the weights close to the direction of the class means, which the loud directions dominate; as `C`
# grows the probe learns to weigh the quiet directions, until from some point on it barely changes.
# The chosen `C` sits near the top of the grid (the print above gives its place); every larger `C`
# of the grid scores the same on validation, and a tie goes to the smaller `C`.

# %%
#| fig-cap: "Validation accuracy of the toy linear probe against the inverse regularisation strength C, with the chosen C marked."
#| fig-alt: "A line plot with C on a logarithmic axis across the whole grid of values tried: validation accuracy rises steeply from the smallest C, levels off after a few steps, and creeps up to its maximum at the largest values; a dashed vertical line marks the chosen C."
fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogx(list(toy['val_acc']), list(toy['val_acc'].values()), 'o-')
ax.axvline(toy['C'], color='gray', ls='--', label=f"chosen C = {toy['C']:g}")
ax.set(xlabel='C (inverse L2 strength)', ylabel='validation accuracy', title='toy: the C sweep', ylim=(0, 1.02))
ax.legend(loc='lower right'); fig.tight_layout(); plt.show()


# %% [markdown]
# ## k-shot probes against zero-shot
#
# > "While it is intuitive to expect zero-shot to underperform one-shot, we instead find that zero-shot
# > CLIP matches the performance of 4-shot logistic regression on the same feature space." (§3.1.5)
#
# > "we estimate the effective data efficiency based on a log-linear interpolation of the performance
# > of a 1, 2, 4, 8, 16-shot (when possible), and a fully supervised linear classifier trained on each
# > dataset." (§3.1.5)
#
# The first is the paper's Figure 6: zero-shot against k-shot probes, averaged over its data sets. The
# second is how its Figure 7 reads, per data set, the number of labeled examples per class that
# zero-shot is worth, and that is the question this chapter asks of our model.
#
# A k-shot probe trains on `k` labeled pictures per class, chooses `C` on probe-val, and is scored on
# probe-test; every `k` is drawn several times with different seeds, because with one picture per
# class *which* picture matters a lot. (probe-val holds more than `k` labeled pictures per class, so
# the k-shot probes get their regularisation chosen with help they would not have in a true few-shot
# setting: this favours them, so the zero-shot worth we report is, if anything, an underestimate. They
# are not refit on probe-val, which would make them no longer k-shot.) The full-data probe follows the
# whole protocol of `linear_probe_accuracy` and counts as having (probe-train + probe-val) / classes
# examples per class.
#
# Where the zero-shot accuracy meets the curve is found as the paper finds it: accuracy is taken as
# linear in $\log k$ between measured points, and the first crossing is solved for $k$.

# %%
#| exports
def zero_shot_worth(ks, accs, zero_shot: float) -> float:
    "Labeled examples per class at which `accs` (rising with `ks`) reaches `zero_shot`, log-linearly interpolated; 0 below the first point, inf above all."
    ks, accs = np.asarray(ks, dtype=float), np.asarray(accs, dtype=float)
    order = np.argsort(ks); ks, accs = ks[order], accs[order]
    if zero_shot <= accs[0]: return float(ks[0]) if zero_shot == accs[0] else 0.0
    above = np.flatnonzero(accs >= zero_shot)
    if len(above) == 0: return math.inf
    j = above[0]
    t = (zero_shot - accs[j - 1]) / (accs[j] - accs[j - 1])
    return float(math.exp(math.log(ks[j - 1]) + t * (math.log(ks[j]) - math.log(ks[j - 1]))))


# %%
#| exports
@dataclass
class KShotCurve:
    "Test accuracies of k-shot probes (several draws per k), with the zero-shot and full-data probe accuracies beside them."
    ks: list[int]
    accs: np.ndarray                   # [len(ks), draws] probe-test accuracy of each draw
    Cs: np.ndarray                     # [len(ks), draws] the C each draw chose on probe-val
    zero_shot: float | None = None     # zero-shot accuracy on the same probe-test pictures
    full: dict | None = None           # linear_probe_accuracy on all of probe-train (+ probe-val)
    full_k: float | None = None        # its labeled examples per class
    chance: float | None = None
    name: str = ''
    n: dict = field(default_factory=dict)   # sizes of the probe-train / probe-val / probe-test parts
    majority: float | None = None      # accuracy of always answering probe-test's most frequent class
    correct: np.ndarray | None = None  # [len(ks), draws, N_test] bool: each draw's right answers on probe-test
    zero_shot_correct: np.ndarray | None = None   # [N_test] bool: zero-shot's right answers on the same pictures
    zero_shot_all: float | None = None   # zero-shot accuracy on every picture of the task (probe-test is a part of them)

    @property
    def mean(self) -> np.ndarray: return self.accs.mean(axis=1)
    @property
    def std(self) -> np.ndarray: return self.accs.std(axis=1)

    def points(self, means=None, full_acc=None) -> tuple[list[float], list]:
        "(examples per class, accuracy) of the curve: the k-shot means (or `means`), then the full-data probe (or `full_acc`)."
        ks, accs = list(self.ks), list(self.mean if means is None else means)
        if self.full is not None and self.full_k > ks[-1]:
            ks.append(self.full_k); accs.append(self.full['acc'] if full_acc is None else full_acc)
        return ks, accs

    def worth(self) -> float:
        "Labeled examples per class a probe needs to match zero-shot (k-shot means, then the full-data probe)."
        if self.zero_shot is None: raise ValueError("this curve has no zero-shot accuracy to compare with")
        return zero_shot_worth(*self.points(), self.zero_shot)


# %% [markdown]
# Check `zero_shot_worth` on numbers worked by hand: accuracies $0.4, 0.6, 0.8$ at $k = 1, 4, 16$ and a
# zero-shot accuracy of $0.7$ lie halfway (in $\log k$) between 4 and 16, at $k = 8$.

# %%
test_close(zero_shot_worth([1, 4, 16], [0.4, 0.6, 0.8], 0.7), 8.0)
test_close(zero_shot_worth([1, 4, 16], [0.4, 0.6, 0.8], 0.6), 4.0)
test_eq(zero_shot_worth([1, 4, 16], [0.4, 0.6, 0.8], 0.3), 0.0)           # worse than a 1-shot probe
test_eq(zero_shot_worth([1, 4, 16], [0.4, 0.6, 0.8], 0.9), math.inf)      # better than every probe
test_close(zero_shot_worth([16, 1, 4], [0.8, 0.4, 0.6], 0.5), 2.0)         # any order of points


# %%
#| exports
def k_shot_curve(train_feats, train_labels, val_feats, val_labels, test_feats, test_labels, ks=None,
                 draws: int = 10, Cs=None, seed: int = 0, zero_shot: float | None = None,
                 chance: float | None = None, full: bool = True, name: str = '', zero_shot_correct=None) -> KShotCurve:
    "k-shot probes (k per class from train, C chosen on val, scored on test; `draws` seeds per k), and the full-data probe."
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    smallest = int(np.bincount(train_labels)[np.unique(train_labels)].min())
    ks = list(ks) if ks is not None else [2 ** i for i in range(int(math.log2(smallest)) + 1)]
    chosen, correct = np.zeros((len(ks), draws)), np.zeros((len(ks), draws, len(test_labels)), dtype=bool)
    for i, k in enumerate(ks):
        for d in range(draws):
            idx = sample_k_shot(train_labels, k, seed=[seed, k, d])
            clf, chosen[i, d], _ = fit_linear_probe(train_feats[idx], train_labels[idx], val_feats, val_labels, Cs)
            correct[i, d] = clf.predict(test_feats) == test_labels
    if zero_shot_correct is not None:
        zero_shot_correct = np.asarray(zero_shot_correct, dtype=bool)
        if zero_shot is None: zero_shot = float(zero_shot_correct.mean())
    curve = KShotCurve(ks, correct.mean(-1), chosen, zero_shot=zero_shot, chance=chance, name=name,
                       majority=float(np.bincount(test_labels).max() / len(test_labels)), correct=correct,
                       zero_shot_correct=zero_shot_correct)
    if full:
        curve.full = linear_probe_accuracy(train_feats, train_labels, val_feats, val_labels, test_feats, test_labels, Cs)
        curve.full_k = curve.full['n_fit'] / len(np.unique(train_labels))
    return curve


# %% [markdown]
# On the toy problem, a stand-in for a zero-shot classifier is easy to make: the class means,
# normalised, as the columns of $W$, the way text embeddings would be. It knows what the classes are
# but nothing of the noise, and it was trained on nothing; the k-shot curve starts below it and has
# to climb.

# %%
W_toy = (toy_means / np.linalg.norm(toy_means, axis=1, keepdims=True)).T             # [d, C]
toy_right = (Xte @ W_toy).argmax(1) == yte                                           # [N_test] zero-shot's right answers
toy_curve = k_shot_curve(Xtr, ytr, Xva, yva, Xte, yte, draws=3, zero_shot_correct=toy_right, chance=0.25, name='toy')
toy_zs = toy_curve.zero_shot
print(f"toy, accuracy on test (chance {toy_curve.chance:.1%}, majority class {toy_curve.majority:.1%}):")
for k, m, s in zip(toy_curve.ks, toy_curve.mean, toy_curve.std): print(f"  {k:2d}-shot: {m:.1%} ± {s:.1%}")
print(f"full probe ({toy_curve.full_k:.0f} per class): {toy_curve.full['acc']:.1%};  stand-in zero-shot: {toy_zs:.1%}"
      f"  ->  worth {toy_curve.worth():.1f} labeled examples per class")
test_eq(toy_curve.accs.shape, (len(toy_curve.ks), 3))
test_eq(toy_curve.ks, [1, 2, 4, 8, 16])                     # powers of two up to the smallest class (20)
again = k_shot_curve(Xtr, ytr, Xva, yva, Xte, yte, ks=[1, 2], draws=2, full=False)
test_eq(again.accs, toy_curve.accs[:2, :2])         # deterministic: draw d of k depends only on (seed, k, d)
test_eq(toy_curve.correct.shape, (len(toy_curve.ks), 3, len(yte)))   # every draw's right answers, kept for the bootstrap
test_eq(toy_curve.majority, 0.25)                   # balanced toy: the majority class is chance


# %% [markdown]
# ### How sure is that figure?
# <!-- fixed: 95% 2,000 -->
#
# The worth is read off where two noisy things cross, the zero-shot accuracy and the k-shot means, both
# measured on the same few probe-test pictures. Where the curve is flat near the crossing, a picture or
# two of probe-test moves the crossing a long way along the $k$ axis, so the figure needs an interval.
#
# We resample what this chapter can resample cheaply, without fitting anything again. One bootstrap
# replicate draws the probe-test pictures again, with replacement, as many as there are, and recomputes
# on *that* resample the zero-shot accuracy, the accuracy of every k-shot draw and of the full-data
# probe. The resample is shared by all of them (a *paired* bootstrap): a hard picture drawn twice counts
# against every classifier at once, and the differences between them vary much less than each accuracy
# alone. For each `k` the draws are also drawn again with replacement before they are averaged, since
# which pictures a probe learned from is the other source of noise. Then the crossing is solved again.
# Over 2,000 replicates, the 95% interval is the middle 95% of the replicates' worths (a percentile
# interval, by the zero-shot chapter's `percentile_interval`). A replicate where zero-shot beats every
# probe counts as a worth beyond the full-data probe, one where it loses to the smallest probe as a worth below its `k`, so an interval may be open at
# either end.
#
# What it does not resample: the split into probe-train, probe-val and probe-test (one seed), the `C`
# chosen on probe-val, and the training of the model itself. If anything the interval is too narrow.

# %%
#| exports
def resample_accuracies(correct, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    "Accuracies [..., n_boot] of right answers `correct` [..., N] on bootstrap resamples of the N pictures, shared by all rows and by every call with the same (N, n_boot, seed)."
    correct = np.asarray(correct, dtype=float)
    n = correct.shape[-1]
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=n_boot)   # [n_boot, N] copies of each picture
    return correct @ counts.T / n


# %%
#| exports
def worth_interval(curve: KShotCurve, n_boot: int = 2000, level: float = 0.95, seed: int = 0, draws: bool = True) -> dict:
    "`curve.worth()` with a percentile interval: a paired bootstrap over probe-test pictures (and, with `draws`, each k's draws)."
    if curve.correct is None or curve.zero_shot_correct is None:
        raise ValueError("the bootstrap needs right answers per picture: k_shot_curve(..., zero_shot_correct=...)")
    K, D, N = curve.correct.shape
    acc = resample_accuracies(curve.correct, n_boot, seed)                                   # [K, D, n_boot]
    if draws: acc = np.take_along_axis(acc, np.random.default_rng([seed, 1]).integers(0, D, (K, D, n_boot)), axis=1)
    means, zs = acc.mean(axis=1), resample_accuracies(curve.zero_shot_correct, n_boot, seed)   # [K, n_boot], [n_boot]
    full = resample_accuracies(curve.full['correct'], n_boot, seed) if curve.full is not None else None
    boot = np.array([zero_shot_worth(*curve.points(means[:, b], None if full is None else full[b]), zs[b])
                     for b in range(n_boot)])
    out = dict(worth=curve.worth(), lo=None, hi=None, level=level, n_boot=n_boot, boot=boot)
    out['lo'], out['hi'] = percentile_interval(boot, level)
    if full is not None:                   # full-data probe minus zero-shot, on the same resamples
        out['full_minus_zero_shot'] = (curve.full['acc'] - curve.zero_shot, *percentile_interval(full - zs, level))
    return out


# %% [markdown]
# The checks: the resamples are shared (a classifier compared with itself differs by exactly zero in
# every replicate; one that is always right scores 1 in every replicate), and the same seed gives the
# same replicates. Then the toy curve's worth with its interval.

# %%
ok = np.random.default_rng(1).random(50) < 0.7
boots = resample_accuracies(np.stack([ok, ok, np.ones(50, bool)]), n_boot=300, seed=3)   # [3, 300]
test_eq(boots.shape, (3, 300)); test_eq(boots[0], boots[1]); test_eq(boots[2], np.ones(300))
test_eq(resample_accuracies(ok, 300, seed=3), boots[0])                          # same (N, n_boot, seed): same resamples
test_close(boots[0].mean(), ok.mean(), eps=0.02)
toy_iv = worth_interval(toy_curve, n_boot=pick(gpu=2000, cpu=2000, test=200))
print(f"toy: zero-shot worth {toy_iv['worth']:.1f} labeled examples per class, "
      f"{toy_iv['level']:.0%} interval {toy_iv['lo']:.1f} to {toy_iv['hi']:.1f} ({toy_iv['n_boot']} replicates)")
assert toy_iv['lo'] <= toy_iv['worth'] <= toy_iv['hi']

# %% [markdown]
# ## Measured: the book's MiniCLIP on held-out emoji
#
# The model is the book's `mini-cpu` run (`book_model()`). <!-- Under nbdev_test a 3-step stand-in, so no
# number below means anything there. --> The pictures are the *test* split of the emoji set, none of
# which CLIP saw in training, cut 50/20/30 per class into probe-train, probe-val and probe-test. Two
# tasks of the zero-shot chapter have enough pictures per class for k up to 32: the five skin tones,
# and gender presentation (man / woman / gender-neutral person), each with the zero-shot chapter's
# classifier: the mean of the task's templates that fill to no training caption.

# %%
#| echo: false
kind_task = emoji_task('category')
kind_counts = np.bincount(kind_task.dataset.labels, minlength=len(kind_task.classnames))
fewest = int(kind_counts.argmin())
try: stratified_split(kind_task.dataset.labels); kind_refused = False
except ValueError: kind_refused = True
display(Markdown(f"The kind-of-emoji task is left out: its class '{kind_task.classnames[fewest]}' has "
                 f"{kind_counts[fewest]} held-out pictures, "
                 + ("too few for `stratified_split` to cut in three parts without leaving one empty." if kind_refused else
                    "the fewest of its classes, too few for k-shot probes up to the largest k.")))


# %% [markdown]
# `probe_task` runs the whole comparison for a zero-shot `Task`: features, split, the zero-shot
# classifier (its templates that fill to no training caption) scored on probe-test, the full-data probe and the
# k-shot curve.

# %%
#| exports
def probe_task(model, task: Task, fractions=(0.5, 0.2, 0.3), ks=None, draws: int = 10, Cs=None,
               seed: int = 0, device=None) -> KShotCurve:
    "Zero-shot vs k-shot and full-data linear probes on `task`'s pictures, split per class by `fractions` with `seed`."
    X, y = extract_features(model, task.dataset, device=device)
    tr, va, te = stratified_split(y, fractions, seed)
    templates = zero_shot_templates(task) if task.trained_on else task.templates    # no prompt a training caption
    W = zero_shot_classifier(model, task.classnames, templates, device=device)
    right = zero_shot_logits(torch.from_numpy(X), W).argmax(1).numpy() == y                # [N] bool, every picture
    zs_right = right[te]                                                                   # [N_test] bool
    curve = k_shot_curve(X[tr], y[tr], X[va], y[va], X[te], y[te], ks=ks, draws=draws, Cs=Cs, seed=seed,
                         zero_shot_correct=zs_right, chance=task.chance, name=task.name)
    curve.n, curve.zero_shot_all = dict(train=len(tr), val=len(va), test=len(te)), float(right.mean())
    return curve


# %%
t0 = time.perf_counter()
model, model_cfg = book_model()
draws, ks, Cs = pick(gpu=10, cpu=10, test=2), pick(gpu=None, cpu=None, test=(1, 4)), pick(gpu=DEFAULT_CS, cpu=DEFAULT_CS, test=DEFAULT_CS[::4])
n_boot = pick(gpu=2000, cpu=2000, test=200)
curves = [probe_task(model, emoji_task(a), ks=ks, draws=draws, Cs=Cs) for a in ('skin_tone', 'gender')]
intervals = {c.name: worth_interval(c, n_boot=n_boot) for c in curves}

def per_class(w: float, c: KShotCurve, short: bool = False) -> str:
    "A worth in words: a number, or an open end of the curve."
    if w == 0: return f"< {c.ks[0]}" if short else f"fewer than {c.ks[0]}"
    if w == math.inf: return f"> {c.full_k:.1f}" if short else f"more than {c.full_k:.1f} (beyond the full-data probe)"
    return f"{w:.1f}"

for c in curves:
    print(f"{c.name}: probe-train {c.n['train']}, probe-val {c.n['val']}, probe-test {c.n['test']} pictures; ks {c.ks}")
    print(f"  on probe-test: chance {c.chance:.1%}, majority class {c.majority:.1%}; zero-shot {c.zero_shot:.1%}, "
          f"full probe {c.full['acc']:.1%} (C = {c.full['C']:.3g}, grid value {list(Cs).index(c.full['C']) + 1} of {len(Cs)})")
print(f"{sum(c.accs.size for c in curves)} k-shot probes and {n_boot} bootstrap replicates per task in {time.perf_counter() - t0:.0f} s")

# %% [markdown]
# Two things to know before the figure: the zero-shot accuracy here is measured on probe-test only,
# a part of the pictures the zero-shot chapter scores, and the sweep's grid may cut the choice of `C`
# short at either end.

# %%
#| echo: false
at_end = {c.name: np.isin(c.Cs, [min(Cs), max(Cs)]).mean() for c in curves}
display(Markdown('\n'.join(
    f"* {c.name}: zero-shot {c.zero_shot:.1%} on the {c.n['test']} probe-test pictures, {c.zero_shot_all:.1%} on all "
    f"{sum(c.n.values())} pictures of the task (the zero-shot chapter's figure): the same classifier, scored on fewer pictures. "
    f"{at_end[c.name]:.0%} of its {c.Cs.size} k-shot probes chose a `C` at an end of the grid."
    for c in curves)))

# %% [markdown]
# Accuracy on probe-test against labeled examples per class (mean and standard deviation over the
# draws), with the zero-shot classifier as a horizontal line, chance as a dotted one and the
# majority-class baseline (always answering probe-test's most frequent class) as a dash-dotted one;
# the square is the full-data probe, and the shaded band the bootstrap interval of the crossing.

# %%
#| fig-cap: "k-shot linear probes on the book model's image features against the zero-shot classifier, for the skin-tone and gender tasks."
#| fig-alt: "Two plots of accuracy on probe-test against labeled examples per class on a base-2 log axis, with error bars over the draws, a red horizontal zero-shot line, a dotted chance line, a dash-dotted majority-class line, a square for the probe trained on all the data, and a shaded band for the interval of the crossing, with one legend below both. For skin tone the probe's mean rises with every doubling of k; for gender it dips from one to two and from sixteen to thirty-two examples per class and rises overall. In both, every k-shot mean stays under the zero-shot line and the full-data probe reaches it, where a dashed vertical line marks the crossing inside a shaded band that runs off the right of the axis. The paragraphs below give the values."
fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 4.4))
for ax, c in zip(np.atleast_1d(axes), curves):
    ax.errorbar(c.ks, c.mean, yerr=c.std, fmt='o-', capsize=3, label=f'k-shot linear probe (mean ± sd over {c.accs.shape[1]} draws)')
    ax.plot([c.full_k], [c.full['acc']], 's', color='C0', label='full-data probe (probe-train + probe-val)')
    ax.axhline(c.zero_shot, color='C3', label='zero-shot (no prompt a training caption)')
    ax.axhline(c.chance, color='gray', ls=':', label='chance')
    ax.axhline(c.majority, color='gray', ls='-.', lw=0.8, label='majority class')
    w, iv = c.worth(), intervals[c.name]
    ax.axvline(w if 0 < w < math.inf else np.nan, color='C3', ls='--', lw=0.8, label='where zero-shot meets the curve')
    ax.axvspan(max(iv['lo'], c.ks[0] / 1.5), min(iv['hi'], c.full_k * 1.5), color='C3', alpha=0.08,
               label=f"{iv['level']:.0%} interval of the crossing")
    ax.set_xscale('log', base=2); ax.set_xlim(c.ks[0] / 1.5, c.full_k * 1.5)
    ax.set(xlabel='labeled examples per class (log scale)', ylabel='accuracy on probe-test',
           title=f"{c.name}: zero-shot worth {per_class(iv['lo'], c, short=True)} to {per_class(iv['hi'], c, short=True)} per class",
           ylim=(0, 1.02))
fig.legend(*np.atleast_1d(axes)[0].get_legend_handles_labels(), loc='lower center', ncol=3, fontsize=10, frameon=False)
fig.tight_layout(rect=(0, 0.17, 1, 1)); plt.show()

# %%
#| hide
if not in_test():        # what the alt text says
    tone_c, gender_c = curves
    assert (np.diff(tone_c.mean) > 0).all(), tone_c.mean                                    # rises with every doubling
    assert np.flatnonzero(np.diff(gender_c.mean) < 0).tolist() == [0, 4] and gender_c.mean[-1] > gender_c.mean[0], gender_c.mean
    for c in curves:
        assert c.mean.max() < c.zero_shot <= c.full['acc'] and 0 < c.worth() < math.inf, c.name
        assert intervals[c.name]['hi'] == math.inf, intervals[c.name]                        # the band runs off the right


# %% [markdown]
# Where the curves cross, computed by `KShotCurve.worth` (log-linear interpolation over the k-shot
# means, then the full-data probe), with the interval of `worth_interval`. The classes of a task are
# not equally frequent among the held-out pictures, so each accuracy stands beside two baselines:
# chance (one over the number of classes) and the majority class. Where the interval is open at an
# end or wide (its ends more than a doubling of $k$ apart), or zero-shot and the nearest point of the
# curve are a picture or two apart, the sentence says so instead of giving one confident figure.

# %%
def nearest_point(c: KShotCurve) -> tuple[str, float, float]:
    "(which probe, its accuracy, how many probe-test pictures it is from zero-shot) for the point of the curve closest to zero-shot."
    ks, accs = c.points()
    i = int(np.argmin([abs(a - c.zero_shot) for a in accs]))
    label = 'full-data probe' if i == len(c.ks) else f'{ks[i]}-shot probe (mean of its draws)'
    return label, accs[i], abs(accs[i] - c.zero_shot) * c.n['test']

def n_pictures(x: float) -> str:
    if abs(x - round(x)) > 1e-6: return f"{x:.1f} pictures"
    return {0: 'no picture', 1: 'one picture', 2: 'two pictures'}.get(round(x), f"{round(x)} pictures")

def worth_sentence(c: KShotCurve, iv: dict) -> str:
    w, lo, hi = iv['worth'], iv['lo'], iv['hi']
    ci = f"{iv['level']:.0%} interval {per_class(lo, c)} to {per_class(hi, c)}"
    out = (f"**{c.name}** ({c.n['test']} probe-test pictures; chance {c.chance:.1%}, majority class {c.majority:.1%}): "
           f"zero-shot gets {c.zero_shot:.1%}. ")
    if w == 0: out += f"That is below even the {c.ks[0]}-shot probe ({c.mean[0]:.1%}): worth {per_class(w, c)} labeled examples per class ({ci})."
    elif w == math.inf:
        tied = iv.get('full_minus_zero_shot') and iv['full_minus_zero_shot'][1] <= 0 <= iv['full_minus_zero_shot'][2]
        out += (f"That is above every probe's accuracy, the full-data one ({c.full['acc']:.1%}, {c.full_k:.1f} per class) "
                f"included ({ci})" + (", though not beyond luck against the full-data probe (below)." if tied else "."))
    elif lo == 0 or hi == math.inf:
        out += (f"The curves cross at {w:.1f} labeled examples per class, but the {ci} is open at one end: "
                f"the data do not pin the worth down, and that figure should not be quoted alone.")
    elif hi > 2 * lo:
        out += (f"It is worth about {w:.1f} labeled examples per class, with a wide {ci} (a factor of {hi / lo:.1f} "
                f"from end to end{', the upper end the full-data probe itself' if math.isclose(hi, c.full_k) else ''}): "
                f"the data support that range, not the figure.")
    else: out += f"It is worth about **{w:.1f} labeled examples per class** ({ci})."
    d, dlo, dhi = iv['full_minus_zero_shot']
    side = 'ahead of' if dlo > 0 else 'behind' if dhi < 0 else 'not distinguishable from'
    out += (f" The full-data probe ({c.full_k:.1f} per class on average) is {side} zero-shot: {100 * d:+.1f} points "
            f"({iv['level']:.0%} interval {100 * dlo:+.1f} to {100 * dhi:+.1f}).")
    label, acc, apart = nearest_point(c)
    if apart < 1e-6: out += (f" Zero-shot and the {label} get the same share of the {c.n['test']} probe-test pictures right "
                             f"({acc:.1%}): the curve meets zero-shot at that point, and one picture more or fewer for "
                             f"zero-shot would move where the two cross.")
    elif apart <= 2: out += (f" The nearest point of the curve, the {label} at {acc:.1%}, is {n_pictures(apart)} of "
                             f"{c.n['test']} from zero-shot, so where the two cross rests on a picture or two.")
    return out

display(Markdown('\n\n'.join(worth_sentence(c, intervals[c.name]) for c in curves)))

# %% [markdown]
# For scale, the paper's Figure 7 (the worth of zero-shot on each of its data sets):
#
# > "Half of the datasets require less than 5 examples per class with a median of 5.4. [...] On
# > ImageNet, zero-shot CLIP matches the performance of a 16-shot linear classifier trained on the
# > same feature space." (§3.1.5)
#
# Ours is above or below that median only where its whole interval is:

# %%
paper_median = 5.4   # the paper's median worth over Figure 7's data sets, quoted above (§3.1.5)
for c in curves:
    iv = intervals[c.name]
    side = ('above' if iv['lo'] > paper_median else 'below' if iv['hi'] < paper_median else 'not distinguishable from')
    print(f"{c.name}: worth {per_class(c.worth(), c, True)} ({iv['level']:.0%} interval {per_class(iv['lo'], c, True)} to {per_class(iv['hi'], c, True)}) labeled examples "
          f"per class: {side} the paper's median of {paper_median}")

# %% [markdown]
# A large worth says as much about the probe as about zero-shot. Our probes learn from a few dozen
# pictures per class at most, in features of a small model trained on a few thousand captions; the
# zero-shot classifier draws on the training captions that named a tone or a gender, labels given in
# words. How many there were, against the pictures probe-train holds:

# %%
#| echo: false
train_records = [r for r in emoji_records(48) if r.split == 'train']
GENDER_WORDS = re.compile(r'\b(man|men|woman|women|boy|girl|person|people)\b')     # a caption that names a gender
named = {'emoji skin_tone': sum('skin tone' in r.name for r in train_records),
         'emoji gender': sum(bool(GENDER_WORDS.search(r.name)) for r in train_records)}
display(Markdown('\n'.join(
    f"* {c.name}: {named[c.name]:,} of the {len(train_records):,} training emoji have a name (the caption's text) that "
    f"{'names a skin tone' if 'tone' in c.name else 'names a gender (man, men, woman, women, boy, girl, person or people)'}, "
    f"against {c.n['train']:,} probe-train pictures ({named[c.name] / c.n['train']:.1f} times as many; with probe-val, "
    f"which the full-data probe also uses, {named[c.name] / (c.n['train'] + c.n['val']):.1f} times)"
    for c in curves if c.name in named)))


# %% [markdown]
# The full-data probe against zero-shot, on the same probe-test pictures:

# %%
#| exports
def probe_table(curves: list[KShotCurve], intervals: dict | None = None) -> str:
    "Markdown table: chance, majority class, zero-shot vs full-data probe accuracy, the C chosen, and the zero-shot worth with its interval."
    def short(w, c): return f'< {c.ks[0]}' if w == 0 else (f'> {c.full_k:.1f}' if w == math.inf else f'{w:.1f}')
    rows = []
    for c in curves:
        iv = (intervals or {}).get(c.name) or (worth_interval(c) if c.zero_shot_correct is not None else None)
        rows.append((c.name, c.n.get('test', ''), f'{c.chance:.1%}', '' if c.majority is None else f'{c.majority:.1%}',
                     f'{c.zero_shot:.1%}', f"{c.full['acc']:.1%}", f"{c.full['C']:.3g}", f'{c.full_k:.1f}', short(c.worth(), c),
                     '' if iv is None else f"{short(iv['lo'], c)} to {short(iv['hi'], c)}"))
    level = next((iv['level'] for iv in (intervals or {}).values()), 0.95)
    return markdown_table(['task', 'probe-test pictures', 'chance', 'majority class', 'zero-shot', 'linear probe (all data)',
                           'C chosen', 'per class for the probe', 'zero-shot worth (per class)', f'{level:.0%} interval'], rows)


# %%
display(Markdown(probe_table(curves, intervals)))

# %%
#| hide
if not in_test():
    for c in curves:
        bar = baseline(c.chance, c.majority)                    # the larger of chance and the majority class
        assert c.full['acc'] > bar and c.zero_shot > bar, (c.name, c.full['acc'], c.zero_shot, bar)
        assert c.mean[-1] > c.mean[0], (c.name, c.mean)           # more labels help the probe
        assert intervals[c.name]['lo'] <= c.worth() <= intervals[c.name]['hi'], (c.name, intervals[c.name])


# %% [markdown]
# How to read these numbers. Zero-shot uses *no* picture of the task, only its class names; each
# k-shot probe uses `k` pictures per class and a `C` chosen with the help of probe-val. The full-data
# probe is the ceiling a linear classifier on these features reaches with all the labels we have, the
# paper's "upper bound for what zero-shot transfer can achieve" (§3.1.5) when the probe's data is
# large enough to estimate its weights well; with a few dozen pictures per class it is an estimate of
# that bound, not the bound itself.
#
# At the smallest `k`, how much does *which* pictures a probe learns from matter, against *how many*?
# Below, the standard deviation of the 1-shot accuracy over the draws, against the mean gain from one
# to two examples per class, each with a bootstrap interval over the draws (each `k`'s draws resampled
# separately: they are independent draws); one is said to matter more only where the two intervals do not overlap.

# %%
#| echo: false
def spread_against_gain(c: KShotCurve, n_boot: int = 2000, seed: int = 0) -> str:
    "One sentence: the spread of the 1-shot draws against the mean gain from k=1 to k=2, each with a bootstrap interval over the draws."
    a1, a2 = c.accs[0], c.accs[1]                                   # [draws] each
    r = np.random.default_rng(seed)
    s1, s2 = a1[r.integers(0, len(a1), (n_boot, len(a1)))], a2[r.integers(0, len(a2), (n_boot, len(a2)))]
    lo, hi = percentile_interval(s2.mean(1) - s1.mean(1))          # the book's one quantile rule, 95%
    sd_lo, sd_hi = percentile_interval(s1.std(1))
    sd, gain = a1.std(), a2.mean() - a1.mean()
    how = ('more than' if sd_lo > max(abs(lo), abs(hi)) else 'less than' if sd_hi < min(abs(lo), abs(hi)) and lo * hi > 0
           else 'not distinguishably more or less than')
    return (f"* {c.name}: the {c.ks[0]}-shot draws spread by {100 * sd:.1f} points (standard deviation over {len(a1)} draws, "
            f"95% interval {100 * sd_lo:.1f} to {100 * sd_hi:.1f}); {c.ks[1]} examples per class instead of {c.ks[0]} gain "
            f"{100 * gain:+.1f} points on average (95% interval {100 * lo:+.1f} to {100 * hi:+.1f}): which picture a probe gets "
            f"matters {how} one more picture per class"
            + (" (the two intervals do not overlap)." if how in ('more than', 'less than') else " (the two intervals overlap)."))
display(Markdown('\n'.join(spread_against_gain(c) for c in curves if len(c.ks) > 1 and c.ks[:2] == [1, 2])
                 or 'This run measured no 1-shot and 2-shot probes to compare.'))

# %% [markdown]
# <!-- tests/test_probe.py checks the machinery without the book model: on separable synthetic features
# the probe gets (nearly) every test picture right, the sweep picks a C from its grid and its choice
# does not depend on the test labels, k-shot draws have exactly k per class, results repeat for a
# seed, and the bootstrap's resamples are shared by every classifier (paired) and its interval holds
# the point estimate. -->
#
# ## What we measured
#
# Printed by the cells above in this run: for held-out emoji skin tone and gender presentation, the
# zero-shot accuracy of the book's MiniCLIP beside chance and the majority class, the k-shot probe
# curve with its spread, the full-data probe and its chosen `C`, and where zero-shot meets the curve,
# with its bootstrap interval.

# %%
for c in curves:
    iv = intervals[c.name]
    print(f"{c.name:16} chance {c.chance:5.1%}  majority {c.majority:5.1%}  zero-shot {c.zero_shot:6.1%}  full probe {c.full['acc']:6.1%}  "
          f"worth {per_class(c.worth(), c, True)}/class ({iv['level']:.0%} interval {per_class(iv['lo'], c, True)} to {per_class(iv['hi'], c, True)})")
    print(' ' * 17 + '  '.join(f"{k}-shot {m:.1%}" for k, m in zip(c.ks, c.mean)))
_ = footer()
