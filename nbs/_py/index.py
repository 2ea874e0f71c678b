# %% [markdown]
# # clip_annotated
#
# > CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
# > Supervision") as a literate program: the paper, the code that implements it, and a check of every
# > claim, side by side.

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
# make reproduce   # the main job: train MiniCLIP on the emoji set, measure it, write runs/mini/report.md
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
#| export
from clip_annotated.tokenizer import tokenize, decode
from clip_annotated.model import CLIP, CLIPConfig, CONFIGS, build_model, create_model, count_parameters
from clip_annotated.pretrained import available_models, load, download, image_transform

# %%
import torch
import clip_annotated as clip

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
# | 5 | [Data](05_data.ipynb) | `data` | the emoji set with its attributes and held-out split, procedural scenes, CSV and webdataset sources |
# | 6 | [Training](06_train.ipynb) | `train` | AdamW, warm-up and cosine, mixed precision, exact accumulation, kill-and-resume checkpoints, DDP, held-out retrieval |
# | 7 | [Zero-shot classification](07_zeroshot.ipynb) | `zeroshot` | class names as a classifier, prompt ensembling, top-k and per-class recall, the embedded tasks |
# | 7b | [Evaluation data sets](07b_evalsets.ipynb) | `evalsets` | CIFAR, STL-10, Pets, Caltech-101, Food-101, ImageNet and its shifted copies, with OpenAI's class names and templates; the paper's figures |
# | 8 | [Linear probes](08_linear_probe.ipynb) | `probe` | logistic regression on frozen features, k-shot probes against zero-shot |
# | 9 | [Prompt engineering](09_prompt_engineering.ipynb) | `prompts` | which sentence carries a class name, ensembling in embedding or probability space |
# | 10 | [Robustness](10_robustness.ipynb) | `robustness` | distribution shifts, a supervised baseline, effective robustness |
# | 11 | [Bias](11_bias.ipynb) | `bias` | association probes with bootstrap intervals; a skew injected into training, found by the probe |
# | 12 | [Limitations](12_limitations.ipynb) | `limits` | counting, attribute binding, prompt sensitivity, noisy supervision |
# | 13 | [Looking inside](13_visualize.ipynb) | `viz` | t-SNE and UMAP, the modality gap, similarity heatmaps, retrieval grids, attention maps and rollout |
# | 15 | [Broader impacts](15_ethics.ipynb) | `ethics` | the paper's bias and surveillance discussion, `safety_notice`, a model card |
# | 98 | [The command line](98_cli.ipynb) | `cli` | `clip-annotated train / reproduce / eval / predict` |
# | 99 | [Benchmarks](99_bench.ipynb) | `bench` | our speed against open_clip's, in one process run |
#
# The efficiency chapter (throughput and memory against batch size and precision) arrives next.
#
# ## How the site is built
#
# The notebooks in `nbs/` are the source of truth. `nbdev_export` writes the package, `nbdev_test` runs
# every notebook, and the site's configuration is the top-level `_quarto.yml` (`nbs/_quarto.yml` is a
# link to it, where nbdev 2 looks for it). With [Quarto](https://quarto.org) installed, `nbdev_docs`
# builds the site; the docs build never executes notebooks, so the pages show the outputs committed
# from a real run. Every chapter also has a plain-text twin in `nbs/_py/` (jupytext, `py:percent`) for
# reading and reviewing diffs.
