# %% [markdown]
# # Your own data
#
# > Train, fine-tune, evaluate, embed and export CLIP on your own image-text pairs from the command line, walked through on handwritten digits and photographs that ship with scikit-learn and scikit-image.

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| hide
import json, os, shutil, subprocess, sys, tempfile, time, warnings
from pathlib import Path
import numpy as np
import matplotlib.pyplot as plt
from PIL import Image
from IPython.display import Markdown, display
from fastcore.test import test_eq, test_close
from sklearn.datasets import load_digits
import skimage.data
from clip_annotated.core import footer, hardware, in_test, pick
from clip_annotated.runfolder import read_metrics
from clip_annotated.run import runs_dir
from clip_annotated.zeroshot import paired_bootstrap       # the zero-shot chapter's paired bootstrap interval

# %% [markdown]
# CLIP's whole premise is that pairs of pictures and the text that came with them are data enough:
#
# > "we constructed a new dataset of 400 million (image, text) pairs collected form [*sic*] a variety of
# > publicly available sources on the Internet." (Radford et al. 2021, §2.2)
#
# The book's chapters train on pairs it draws itself (emoji, scenes). This one does what a reader with
# pairs of their own would do, with nothing but the `clip-annotated` command: put the pairs in a CSV
# file or in tar shards, train a model on them, fine-tune the book's model on them instead, measure
# zero-shot classification and retrieval on pictures held out, write the embeddings to files, export
# the model for Hugging Face `transformers` and open_clip, and run the same training on several
# processes with `torchrun`. The options carry open_clip's names (`--train-data`, `--csv-img-key`,
# `--dataset-resampled`, `--pretrained`, `--lock-image`), so habits carry over both ways.
#
# ```{mermaid}
# flowchart LR
#   P["your pairs<br/>CSV or tar shards"] --> T["clip-annotated train<br/>(--pretrained: fine-tune)"]
#   T --> R["runs/NAME<br/>checkpoint, report"]
#   R --> E["clip-annotated eval<br/>zero-shot, retrieval"]
#   R --> M["clip-annotated embed<br/>features as .npy"]
#   R --> X["clip-annotated export<br/>transformers, open_clip"]
# ```
#
# Every command below is run by this notebook exactly as printed, from the top of the checkout (where
# `make` runs), so you can paste it into a shell. Under `nbdev_test` they run in a scratch folder with a
# handful of steps.

# %%
top = pick(gpu=runs_dir().parent, cpu=runs_dir().parent, test=Path(tempfile.mkdtemp(prefix='clip_annotated_own_')))
env = {**os.environ, 'PATH': f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
env.pop('IN_TEST', None)                   # the commands run for real; their size comes from the options below
t_chapter = time.perf_counter()

def sh(cmd: str, show: bool = True) -> str:
    "Run one command line from the top of the checkout, print it and (with `show`) what it printed; fail loudly."
    print('$', cmd)
    r = subprocess.run(cmd, shell=True, cwd=top, env=env, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f"`{cmd}` failed ({r.returncode}):\n{r.stderr[-3000:]}")
    if show and r.stdout.strip(): print(r.stdout.rstrip())
    return r.stdout


# %% [markdown]
# ## The pairs
#
# Two sources that ship inside Python packages, so nothing is downloaded. scikit-learn's `load_digits`
# holds small scanned handwritten digits, 8×8 pixels with 17 grey levels; we draw each
# as dark ink on white at 48×48 pixels and caption it in a few wordings ("a handwritten digit 3", "the
# number three, written by hand"). scikit-image's sample data holds a dozen photographs (an astronaut,
# a cat, a cup of coffee, a rocket, coins); each gives a few random crops captioned with what it shows,
# so the model also meets pictures that are not digits. A fifth of the digits, chosen at random within
# each digit, are held out: their pictures never reach training.

# %%
WORDS = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')
DIGIT_CAPTIONS = ('a handwritten digit {d}', 'the number {w}, written by hand', 'a handwritten {w}', 'the digit {d}')
PHOTOS = {'astronaut': 'a photo of an astronaut', 'chelsea': 'a photo of a cat', 'coffee': 'a photo of a cup of coffee',
          'rocket': 'a photo of a rocket on its launch pad', 'coins': 'a photo of old coins', 'camera': 'a photo of a cameraman',
          'moon': 'a photo of the surface of the moon', 'clock': 'a photo of a clock', 'hubble_deep_field': 'a photo of galaxies',
          'colorwheel': 'a colour wheel', 'brick': 'a photo of a brick wall', 'grass': 'a photo of grass'}

def digit_picture(pixels: np.ndarray, size: int = 48) -> Image.Image:
    "An 8×8 digit of `load_digits` (values 0..16) as dark ink on white, `size`×`size` RGB."
    ink = (255 - pixels * 255 / 16).astype(np.uint8)
    return Image.fromarray(ink).resize((size, size), Image.Resampling.BICUBIC).convert('RGB')

def photo_crops(name: str, n: int, rng: np.random.Generator, size: int = 48) -> list[Image.Image]:
    "`n` random square crops (a third to all of the short side) of scikit-image's sample photo `name`."
    im = Image.fromarray(getattr(skimage.data, name)()).convert('RGB')
    w, h = im.size
    out = []
    for _ in range(n):
        s = int(rng.uniform(1 / 3, 1) * min(w, h)); x, y = rng.integers(0, w - s + 1), rng.integers(0, h - s + 1)
        out.append(im.crop((x, y, x + s, y + s)).resize((size, size), Image.Resampling.BICUBIC))
    return out

digits = load_digits()
rng = np.random.default_rng(0)
held = np.zeros(len(digits.target), bool)
for d in range(10):                                         # a fifth of each digit, at random
    idx = np.flatnonzero(digits.target == d)
    held[rng.choice(idx, size=len(idx) // 5, replace=False)] = True
def caption(d: int, k: int) -> str: return DIGIT_CAPTIONS[k % len(DIGIT_CAPTIONS)].format(d=d, w=WORDS[d])
train_pairs = [(digit_picture(x), caption(y, k)) for k, (x, y) in enumerate(zip(digits.images, digits.target)) if not held[k]]
train_pairs += [(im, text) for name, text in PHOTOS.items() for im in photo_crops(name, 8, rng)]
val_pairs = [(digit_picture(x), caption(y, 0)) for x, y, h in zip(digits.images, digits.target, held) if h]
print(f"{len(train_pairs)} training pairs ({(~held).sum()} digits, {len(train_pairs) - (~held).sum()} photo crops), "
      f"{len(val_pairs)} held-out digits")

# %%
#| fig-cap: "A few of the training pairs: handwritten digits from scikit-learn and crops of scikit-image's sample photographs, each with its caption."
#| fig-alt: "Two rows of small pictures with their captions underneath. The top row shows handwritten digits drawn as dark ink on white, captioned with wordings such as a handwritten digit and the number written by hand. The bottom row shows crops of photographs: an astronaut, a cat, a cup of coffee, a rocket, coins and a cameraman."
show = [train_pairs[k] for k in range(0, 60, 10)] + [p for p in train_pairs if p[1].startswith('a photo')][::8][:6]
fig, axes = plt.subplots(2, 6, figsize=(12, 4.4))
for ax, (im, text) in zip(axes.flat, show):
    ax.imshow(im); ax.set_axis_off(); ax.set_title(text.replace(', ', ',\n').replace(' on ', '\non '), fontsize=8)
fig.tight_layout(); plt.show()

# %% [markdown]
# ## A CSV file and tar shards
#
# The two formats the field uses. A CSV file names a picture (a path relative to the file) and its
# caption in columns that open_clip calls `filepath` and `title`; the readers appendix's `write_csv` writes
# the pictures as PNG files beside it. Tar shards are what large collections use (img2dataset writes
# them): each shard holds `KEY.png` and `KEY.txt` members, and the training loop streams them through
# the `webdataset` library. The held-out digits also go into a class-per-folder tree, the layout of
# torchvision's `ImageFolder`, which is how `clip-annotated eval --data` reads a labelled set, and the
# ten class names into a text file for `embed`.

# %%
from clip_annotated.readers import write_csv, write_webdataset
data = top / 'runs' / 'digits-data'
shutil.rmtree(data, ignore_errors=True)
write_csv(train_pairs, data / 'train.csv'); write_csv(val_pairs, data / 'val.csv')
shards = write_webdataset(train_pairs, data / 'shards', samples_per_shard=500)
for k, (x, y, h) in enumerate(zip(digits.images, digits.target, held)):
    if h: (data / 'heldout' / str(y)).mkdir(parents=True, exist_ok=True); digit_picture(x).save(data / 'heldout' / str(y) / f'{k:04d}.png')
(data / 'digits.txt').write_text(''.join(f'a handwritten digit {d}\n' for d in range(10)))
print((data / 'train.csv').read_text().splitlines()[:3])
print(f"{len(shards)} shards: {', '.join(p.name for p in shards)}")

# %% [markdown]
# ## Training from the command line
#
# The book's `mini-cpu` preset (MiniCLIP with 12-pixel patches on 48-pixel pictures) with `--train-data`
# and `--val-data` instead of the emoji set. Everything else is an option of the training chapter; the
# run folder gets a checkpoint, `metrics.jsonl`, the curves and `report.md`, whose data line names the
# CSV and how many pairs it held. One option is not the default: `--zoom 1.0 1.2`. The default crop
# (`TRAIN_ZOOM`, chapter 3) was chosen on the emoji set; a set this small, passed over many times, can
# need a stronger crop to keep from learning its pictures by heart, and the wider range is the one the
# book used before. Whether it does is for the held-out loss that `--eval-every` logs to say: if it
# climbs while the training loss falls, the run is memorising.

# %%
steps = pick(gpu=600, cpu=600, test=3)
sh(f"clip-annotated train --train-data runs/digits-data/train.csv --val-data runs/digits-data/val.csv "
   f"--out runs/digits --steps {steps} --batch-size 128 --warmup {pick(gpu=60, cpu=60, test=1)} --zoom 1.0 1.2 "
   f"--eval-every {pick(gpu=200, cpu=200, test=0)} --no-resume --no-progress")
recs = read_metrics(top / 'runs/digits/metrics.jsonl')
log = [r for r in recs if 'loss' in r]
digits_rate = len(log) / log[-1]['wall_s']
print(f"{digits_rate:.2f} steps/s ({digits_rate * 128:.0f} pairs/s) on {hardware()}")
print('held-out loss by step: ' + ', '.join(f"{r['step']}: {r['eval']['loss']:.2f}" for r in recs if 'loss' in r.get('eval', {}))
      + f"; training loss over the last 50 steps {np.mean([r['loss'] for r in log[-50:]]):.2f}")

# %% [markdown]
# ## Fine-tuning the book's model
#
# The same data, starting from the book's emoji model (`runs/mini`, which `make reproduce` and the
# training chapter write) instead of random weights. `--pretrained` takes the weights and the
# architecture from there; the optimiser, the warm-up and the cosine schedule start afresh at the
# learning rate given here. Resuming a run with another learning rate would be refused (the training
# chapter explains why); a fine-tune is a new run in its own folder.

# %%
if in_test() and not (top / 'runs/mini/checkpoint.pt').exists():     # the scratch folder has no book run: a stand-in
    sh("clip-annotated train --preset mini-cpu --out runs/mini --steps 2 --batch-size 32 --eval-every 0 --no-progress", show=False)
_ = sh(f"clip-annotated train --pretrained runs/mini --train-data runs/digits-data/train.csv --val-data runs/digits-data/val.csv "
       f"--out runs/digits-ft --steps {pick(gpu=300, cpu=300, test=3)} --batch-size 128 --lr 5e-4 --warmup {pick(gpu=30, cpu=30, test=1)} "
       f"--no-resume --no-progress")

# %% [markdown]
# ## Zero-shot classification of the held-out digits
#
# `eval --data` reads the class-per-folder tree: the folder names (`0` to `9`) are the class names, and
# each `--template` turns one into a prompt. Top-1 is to be read against two baselines: chance (one in
# ten) and the majority class (always answering the most common digit), which an imbalanced set can
# make much higher than chance.

# %%
zs = {}
for run in ('digits', 'digits-ft'):
    out = sh(f"clip-annotated eval --model runs/{run} --data runs/digits-data/heldout --template 'a handwritten digit {{}}' --json",
             show=False)
    zs[run] = m = json.loads(out.strip().splitlines()[-1])
    print(f"runs/{run}: top-1 {100 * m['top1']:.1f}%, top-5 {100 * m['top5']:.1f}%, mean per-class recall "
          f"{100 * m['mean_per_class_recall']:.1f}% on {m['n']} held-out digits; chance {100 * m['chance_top1']:.1f}%, "
          f"majority class {100 * m['majority_top1']:.1f}%")

# %% [markdown]
# Retrieval works on any pairs file: `eval --retrieval` ranks all held-out pictures against all their
# distinct captions, in both directions (here ten captions, one per digit, so image→text R@1 is the
# same question as top-1 above with the training captions' wording).

# %%
_ = sh("clip-annotated eval --model runs/digits --retrieval runs/digits-data/val.csv")

# %% [markdown]
# ## Embeddings to files
#
# For search, clustering or a classifier of your own, `embed` writes L2-normalised features as NumPy
# arrays, with the file (or text) of each row beside them. A check that they are what `eval` used: the
# nearest of the ten digit prompts for each picture gives the same accuracy.

# %%
_ = sh("clip-annotated embed --model runs/digits --images runs/digits-data/heldout --texts runs/digits-data/digits.txt "
       "--out runs/digits-embeddings")

def right_answers(folder: Path) -> np.ndarray:
    "Per picture: is the nearest of the ten digit prompts the right one (from an `embed` folder)?"
    I, T = np.load(folder / 'image_features.npy'), np.load(folder / 'text_features.npy')
    truth = np.array([int(Path(f).parent.name) for f in (folder / 'image_files.txt').read_text().splitlines()])
    return (I @ T.T).argmax(1) == truth

emb = top / 'runs/digits-embeddings'
I = np.load(emb / 'image_features.npy')
right = right_answers(emb)
print(f"{I.shape[0]} pictures × {I.shape[1]} dimensions, norms {np.linalg.norm(I, axis=1).min():.6f}..{np.linalg.norm(I, axis=1).max():.6f}; "
      f"nearest prompt right for {100 * right.mean():.1f}%")
test_close(np.linalg.norm(I, axis=1), np.ones(len(I)), eps=1e-5)
test_close(right.mean(), zs['digits']['top1'], eps=1e-6)

# %% [markdown]
# The same files answer the question the two runs raise: is the difference between training from
# scratch and fine-tuning the emoji model more than the luck of which digits were held out? A paired
# bootstrap over the held-out pictures (the zero-shot chapter's `paired_bootstrap`) says:

# %%
_ = sh("clip-annotated embed --model runs/digits-ft --images runs/digits-data/heldout --texts runs/digits-data/digits.txt "
       "--out runs/digits-ft-embeddings", show=False)
import torch
gap = paired_bootstrap(torch.from_numpy(right), torch.from_numpy(right_answers(top / 'runs/digits-ft-embeddings')))
print(f"top-1, from scratch − fine-tuned: {100 * gap['diff']:+.1f} points, 95% interval [{100 * gap['lo']:+.1f}, {100 * gap['hi']:+.1f}]")

# %% [markdown]
# ## Sharing the model
#
# `export` writes a run in the layouts the field's tools read: `--format hf` a folder that
# `transformers.CLIPModel.from_pretrained` loads, `--format open_clip` a configuration and weights for
# open_clip. `tests/test_export.py` checks that both give our embeddings to within $10^{-5}$; here a
# spot check with `transformers`.

# %%
_ = sh("clip-annotated export runs/digits --format hf --out runs/digits-hf")
warnings.filterwarnings('ignore', message='IProgress not found')   # tqdm's note about notebook widgets
import transformers
transformers.utils.logging.disable_progress_bar(); transformers.utils.logging.set_verbosity_error()
from clip_annotated import load, tokenize
ours, preprocess = load(top / 'runs/digits', device='cpu')
hf = transformers.CLIPModel.from_pretrained(top / 'runs/digits-hf').eval()
x = torch.stack([preprocess(Image.open(data / 'heldout' / '3' / f)) for f in sorted(os.listdir(data / 'heldout' / '3'))[:4]])
tok = tokenize(['a handwritten digit 3'], context_length=ours.context_length)
with torch.no_grad():
    a = ours.encode_image(x); b = hf.get_image_features(pixel_values=x)
    b = getattr(b, 'pooler_output', b) if not torch.is_tensor(b) else b
    c = ours.encode_text(tok); d = hf.get_text_features(input_ids=tok)
    d = getattr(d, 'pooler_output', d) if not torch.is_tensor(d) else d
print(f"largest difference, transformers against ours: images {(a - b).abs().max():.1e}, text {(c - d).abs().max():.1e}")
assert (a - b).abs().max() < 1e-4 and (c - d).abs().max() < 1e-4

# %% [markdown]
# ## Many processes, shards, `torchrun`
#
# The same training on two processes (gloo on a CPU, NCCL on GPUs), streaming the tar shards. With
# `--dataset-resampled`, each process draws shards with replacement and an epoch is
# `--train-num-samples` pairs, so every process runs exactly the same number of steps whatever the
# shard sizes; without it, each process reads its own shards and the processes agree to end an epoch
# when the first runs out.

# %%
sh(f"torchrun --standalone --nproc_per_node=2 -m clip_annotated.run --train-data 'runs/digits-data/shards/{{00000..0000{len(shards) - 1}}}.tar' "
   f"--dataset-resampled --train-num-samples 1024 --val-data runs/digits-data/val.csv --out runs/digits-ddp "
   f"--steps {pick(gpu=40, cpu=40, test=2)} --batch-size 64 --warmup 4 --threads 1 --no-resume --no-progress", show=False)
ddp = [r for r in read_metrics(top / 'runs/digits-ddp/metrics.jsonl') if 'loss' in r]
print(f"{len(ddp)} steps on 2 processes, epochs {sorted({r['epoch'] for r in ddp})}, {len(ddp) / ddp[-1]['wall_s']:.2f} steps/s")
print((top / 'runs/digits-ddp/report.md').read_text().split('## Held-out')[0].strip())

# %% [markdown]
# ## What we measured

# %%
d0, ft = zs['digits'], zs['digits-ft']
held_out = [r for r in read_metrics(top / 'runs/digits/metrics.jsonl') if 'eval' in r][-1]['eval']
verdict = ('its 95% interval excludes zero' if gap['lo'] > 0 or gap['hi'] < 0
           else 'its 95% interval reaches zero, so this run cannot tell the two apart')
display(Markdown(
    f"On {hardware()}: training on {len(train_pairs):,} pairs ran at {digits_rate:.2f} steps/s. Zero-shot top-1 on "
    f"{d0['n']} held-out digits: {100 * d0['top1']:.1f}% from scratch ({steps} steps) and {100 * ft['top1']:.1f}% fine-tuned "
    f"from the emoji model (fewer steps, lower learning rate), against chance {100 * d0['chance_top1']:.0f}% and the majority "
    f"class {100 * d0['majority_top1']:.1f}%. The difference, {100 * gap['diff']:+.1f} points "
    f"[{100 * gap['lo']:+.1f}, {100 * gap['hi']:+.1f}]: {verdict}. Held-out retrieval of the run from scratch, "
    f"image→text R@1 {100 * held_out['i2t_R@1']:.1f}% and text→image {100 * held_out['t2i_R@1']:.1f}% (chance "
    f"{100 * held_out['i2t_chance@1']:.0f}%). Two processes streaming shards ran {len(ddp)} steps at {len(ddp) / ddp[-1]['wall_s']:.2f} steps/s."))

# %%
if in_test(): shutil.rmtree(top, ignore_errors=True)
_ = footer(t_chapter)
