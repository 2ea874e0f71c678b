# %% [markdown]
# # clip_annotated
#
# > CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision") as a literate program: the paper, the code that implements it, and a check of every claim, side by side.

# %% [markdown]
# This site is a set of notebooks that read like chapters. Each one quotes a short passage of the paper,
# says what it means in plain words, implements it in plain PyTorch, and then checks the claim with code
# that runs: an assert, a comparison with a reference implementation, a figure. The same notebooks are
# exported into the `clip_annotated` package, which you can use the way you would use OpenAI's `clip`.
#
# ## Quick start
#
# Two commands, each of which sets up a local virtual environment (`.venv`) on first use:
#
# ```sh
# make reproduce   # the main job: train MiniCLIP on the emoji set (and its bias twin), measure them, write runs/mini/report.md
# make test        # run every notebook (nbdev_test), then the test suite (pytest)
# ```
#
# Nothing is downloaded at run time: the default data is rendered from packages (emoji pictures and
# procedurally drawn scenes), and the code that would download (OpenAI's weights, public data sets)
# says so clearly when you are offline.
#
# ## Use it like `clip`

# %%
#| default_exp __init__

# %%
#| exports
# `import clip_annotated` stays light (the command line answers `--help` without loading PyTorch): each public
# name is imported from its chapter's module the first time it is used.
_PUBLIC = {'tokenizer': ('tokenize', 'decode'),
           'model': ('CLIP', 'CLIPConfig', 'CONFIGS', 'build_model', 'create_model', 'count_parameters', 'uses_quick_gelu'),
           'pretrained': ('available_models', 'load', 'download', 'image_transform', 'export_model', 'get_tokenizer',
                          'create_model_and_transforms')}
_WHERE = {name: module for module, names in _PUBLIC.items() for name in names}

def __getattr__(name: str):
    "Import a public name (`clip_annotated.load`, ...) from its module on first use."
    if name not in _WHERE: raise AttributeError(f"module 'clip_annotated' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f'clip_annotated.{_WHERE[name]}'), name)
    globals()[name] = value
    return value

def __dir__(): return sorted([*globals(), *_WHERE])


# %%
#| hide
import torch
import clip_annotated as clip

# %%
model = clip.create_model('MiniCLIP').eval()          # random weights: the shapes are the point here
text = clip.tokenize(["a photo of a cat", "a photo of a dog"])
image = torch.randn(1, 3, 48, 48)
with torch.no_grad():
    logits_per_image, logits_per_text = model(image, text)
probs = logits_per_image.softmax(dim=-1)
print(text.shape, logits_per_image.shape, probs.sum().item())
assert text.shape == (2, 77) and logits_per_image.shape == (1, 2)

# %% [markdown]
# `clip.load(name_or_path)` returns `(model, preprocess)` like OpenAI's `clip.load`, for a released
# model's name (downloaded once, checksum verified), an OpenAI checkpoint, a Hugging Face `transformers`
# directory or an open_clip state dict, and never runs code stored in a checkpoint file.
# `clip.tokenize` gives the same tokens as OpenAI's tokenizer, `clip.build_model(state_dict)` reads
# any of OpenAI's released checkpoints, and `CLIP` has OpenAI's constructor, parameter names and
# outputs. The tests in `tests/` hold us to that against open_clip and Hugging Face `transformers`.
#
# ## Chapters
#
# | | chapter | module | what it holds |
# |---|---|---|---|
# | 0 | [Preliminaries](00_prelims.ipynb) | `core` | notation of the paper, device and precision, reproducibility |
# | 1 | [The tokenizer](01_tokenizer.ipynb) | `tokenizer` | byte-level BPE, `tokenize`, `decode` |
# | 2 | [The model](02_model.ipynb) | `model` | ViT, modified ResNet, text Transformer, `CLIP`, `build_model`, the released configurations |
# | 3 | [Pretrained weights](03_pretrained.ipynb) | `pretrained` | `available_models`, `download`, `load` (OpenAI, Hugging Face, open_clip, our runs), `preprocess` |
# | 4 | [The contrastive loss](04_loss.ipynb) | `loss` | Figure 3's symmetric cross entropy, the temperature, the distributed gather with exact gradients |
# | 5 | [Data](05_data.ipynb) | `data` | the emoji set with its attributes and held-out split, procedural scenes, CSV files and shards through the `webdataset` library, `open_data` |
# | 6 | [Training](06_train.ipynb) | `train` | AdamW, warm-up and cosine, mixed precision, exact accumulation, kill-and-resume checkpoints, DDP, held-out retrieval; your own pairs (CSV, shards), fine-tuning, locked towers, refused mixed resumes |
# | 6b | [Your own data](06b_own_data.ipynb) | – | a walk-through: digits and photos as CSV and shards, train, fine-tune, zero-shot, embed, export, `torchrun` |
# | 7 | [Zero-shot classification](07_zeroshot.ipynb) | `zeroshot` | class names as a classifier, prompt ensembling, top-k and per-class recall, the embedded tasks |
# | 7b | [Evaluation data sets](07b_evalsets.ipynb) | `evalsets` | CIFAR, STL-10, Pets, Caltech-101, Food-101, ImageNet and its shifted copies, with OpenAI's class names and templates; the paper's figures |
# | 8 | [Linear probes](08_linear_probe.ipynb) | `probe` | logistic regression on frozen features, k-shot probes against zero-shot |
# | 9 | [Prompt engineering](09_prompt_engineering.ipynb) | `prompts` | which sentence carries a class name, ensembling in embedding or probability space |
# | 10 | [Robustness](10_robustness.ipynb) | `robustness` | distribution shifts, a supervised baseline, effective robustness |
# | 11 | [Bias](11_bias.ipynb) | `bias` | association probes with bootstrap intervals; a skew injected into training, found by the probe |
# | 12 | [Limitations](12_limitations.ipynb) | `limits` | counting, attribute binding, prompt sensitivity, noisy supervision |
# | 13 | [Looking inside](13_visualize.ipynb) | `viz` | t-SNE and UMAP, the modality gap, similarity heatmaps, retrieval grids, attention maps and rollout |
# | 14 | [Efficiency](14_efficiency.ipynb) | `efficiency` | throughput and memory against batch size, float32 against bfloat16/float16, `torch.compile`, epoch times for this machine |
# | 15 | [Broader impacts](15_ethics.ipynb) | `ethics` | the paper's bias and surveillance discussion, `safety_notice`, a model card |
# | 98 | [The command line](98_cli.ipynb) | `cli` | `clip-annotated train / reproduce / eval / predict` |
# | 99 | [Benchmarks](99_bench.ipynb) | `bench` | our speed against open_clip's, in one process run |
#
# ## Results: the paper beside this book
#
# The paper trained on 400 million pairs with hundreds of GPUs; this book trains a MiniCLIP on a few
# thousand emoji on whatever machine it runs on. The numbers cannot be equal, but each claim can be
# checked at both scales. The left column is the paper's (with where it says so); the right column is
# read from `runs/mini/results.json`, which `make reproduce` writes, and names the machine it ran on.

# %%
#| hide
import json
from IPython.display import Markdown, display
from clip_annotated.core import footer
from clip_annotated.train import load_run, runs_dir

# %%
#| echo: false
PAPER = {  # Radford et al. 2021: the section or table each figure comes from
    'train': "ViT-L/14: 12 days on 256 V100 GPUs; 32 epochs of 400 M pairs, batch 32,768 (§2.5)",
    'i2t': "88.0% (Flickr30k, zero-shot, Table 13)",
    't2i': "68.7% (Flickr30k, zero-shot, Table 13)",
    'zs': "76.2% top-1 (ImageNet, ViT-L/14@336px, Table 11)",
    'ens': "+3.5 points (ImageNet, 80 prompts, §3.1.4)",
    'bias': "FairFace probes: results differ by race and gender, depending on the classes offered (§7.1)",
}

def results_rows(res: dict, batch_size: int) -> list[str]:
    "Rows of the landing page's table from a reproduce run's results.json."
    pct = lambda x: f"{100 * x:.1f}%"
    chance = lambda x: f"{100 * x:.2g}%"
    test, zs = res['test'], {z['task']: z for z in res.get('zeroshot', [])}
    tone = zs.get('emoji skin_tone')
    rows = [f"| training | {PAPER['train']} | {res['steps']:,} steps of {batch_size} "
            f"({res['steps'] // res['steps_per_epoch']} epochs of {res['train_items']:,} emoji), "
            f"{res['parameters'] / 1e6:.1f} M parameters: {res['train_wall_s'] / 60:.1f} min |",
            f"| retrieval R@1, image → text | {PAPER['i2t']} | {pct(test['i2t_R@1'])} (held-out emoji, chance {chance(test['i2t_chance@1'])}) |",
            f"| retrieval R@1, text → image | {PAPER['t2i']} | {pct(test['t2i_R@1'])} (held-out emoji, chance {chance(test['t2i_chance@1'])}) |"]
    if tone:
        rows += [f"| zero-shot classification | {PAPER['zs']} | {pct(tone['ensemble_top1'])} (skin tone of held-out emoji, "
                 f"{tone['classes']} classes, chance {chance(tone['chance'])}) |",
                 f"| prompt ensembling over one template | {PAPER['ens']} | "
                 f"{100 * (tone['ensemble_top1'] - tone['single_top1']):+.1f} points ({tone['prompts']['ensemble']} prompts, skin tone) |"]
    b = res.get('bias')
    if b:
        rows.append(f"| bias probe | {PAPER['bias']} | {b['summary']} |")
    return rows

path = runs_dir() / 'mini' / 'results.json'
if path.exists():
    res = json.loads(path.read_text())
    hw = res.get('hardware', 'a machine not recorded in this results.json (run `make reproduce` again)')
    table = '\n'.join(['| | the paper | this book: MiniCLIP from `make reproduce` |', '|---|---|---|', *results_rows(res, load_run(path.parent)[1].batch_size)])
    display(Markdown(table + f"\n\nOurs measured on {hw}."))
else:
    display(Markdown(f"No run at `{path}` on this machine: `make reproduce` writes it, and this table then fills in."))

# %% [markdown]
# ## How the site is built
#
# The notebooks in `nbs/` are the source of truth. `nbdev_export` writes the package, `nbdev_test` runs
# every notebook, and the site's configuration is the top-level `_quarto.yml` (`nbs/_quarto.yml` is a
# link to it, where nbdev 2 looks for it). With [Quarto](https://quarto.org) installed, `nbdev_docs`
# builds the site; the docs build never executes notebooks, so the pages show the outputs committed
# from a real run. Every chapter also has a plain-text twin in `nbs/_py/` (jupytext, `py:percent`) for
# reading and reviewing diffs.

# %%
#| echo: false
_ = footer()
