# %% [markdown]
# # clip_annotated
#
# > CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision") as a literate program: the paper, the code that implements it, and checks of its claims at a small scale, side by side.

# %% [markdown]
# ## What CLIP is
#
# > "We demonstrate that the simple pre-training task of predicting which caption goes with which image
# > is an efficient and scalable way to learn SOTA image representations from scratch on a dataset of
# > 400 million (image, text) pairs collected from the internet." (Abstract)
#
# CLIP trains two encoders side by side, one for pictures and one for text, so that a picture and its
# caption land close together in one shared space and a picture and someone else's caption land far
# apart. Nothing in that task names a fixed list of classes, so the trained model can classify into
# classes it was never trained on: write each class as a sentence ("a photo of a dog."), encode the
# sentences, and pick the one nearest the picture. The paper calls this zero-shot transfer, and most
# of its claims are about how well it works, how it scales, and where it fails.
#
# ## What this book reproduces
#
# This site is a set of notebooks that read like chapters. A chapter quotes a short passage of the paper,
# says what it means in plain words, implements it in plain PyTorch, and then, where a laptop can,
# checks the claim with code that runs: an assert, a comparison with a reference implementation, a
# figure. Where it cannot (a result on ImageNet, FairFace or 400 million pairs), the chapter quotes the
# paper's figure, says so, and gives the code that would check it on the real data. The table below
# marks which is which for the paper's headline claims. The same notebooks are
# exported into the `clip_annotated` package, which you can use the way you would use OpenAI's `clip`.
#
# ## Results: the paper beside this book
#
# The paper trained on 400 million pairs with hundreds of GPUs; this book trains a MiniCLIP on a few
# thousand emoji on whatever machine it runs on. The numbers cannot be equal; what a small run can
# check is whether an effect the paper reports appears at all, and with what uncertainty. The first
# column of figures is the paper's (with where it says so); the second is read from
# `runs/mini/results.json`, which `make reproduce` writes, and names the machine it ran on; the last
# says whether the claim is only quoted here or checked in kind, and where. The
# [results table](98b_results.ipynb) appendix builds it, and writes the same table into the README.

# %%
#| hide
import json
from IPython.display import Markdown, display
from clip_annotated.core import footer
from clip_annotated.run import load_run, runs_dir
from clip_annotated.results import paper_table

# %%
#| echo: false
path = runs_dir() / 'mini' / 'results.json'
if path.exists():
    res = json.loads(path.read_text())
    hw = res.get('hardware', 'a machine not recorded in this results.json (run `make reproduce` again)')
    seeds_path = runs_dir() / 'bias-seeds.json'                 # written by the bias chapter when it runs
    seeds = json.loads(seeds_path.read_text()) if seeds_path.exists() else None
    table = paper_table(res, load_run(path.parent)[1].batch_size, seeds)
    display(Markdown(table + f"\n\nOurs measured on {hw}."))
else:
    display(Markdown(f"No run at `{path}` on this machine: `make reproduce` writes it, and this table then fills in."))

# %% [markdown]
# Two of the paper's headline measurements are made in their chapters rather than in this table, whose
# rows come from `results.json`: how many labelled examples per class zero-shot is worth (Figures 6 and
# 7, §3.1.5), on the book's model in [Linear probes](08_linear_probe.ipynb), and effective robustness
# under distribution shift (Figure 13, §3.3), in [Robustness](10_robustness.ipynb).

# %% [markdown]
# ## Quick start
#
# Two commands, each of which sets up a local virtual environment (`.venv`) on first use:
#
# ```sh
# make reproduce   # train MiniCLIP on the emoji set, write runs/mini/report.md
# make test        # every notebook (nbdev_test), then the tests
# ```
#
# `make reproduce` also trains the run's bias twin (chapter 11) and writes a model card beside the
# report. Nothing is downloaded at run time: the default data is rendered from packages (emoji
# pictures and procedurally drawn scenes), and the code that would download (OpenAI's weights, public
# data sets) says so clearly when you are offline.
#
# ## Use it like `clip`

# %%
#| hide
import torch

# %%
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
# directory or an open_clip state dict. It never runs code stored in a checkpoint file unless you ask
# for `jit=True`, which runs a TorchScript archive's own code, as OpenAI's `clip.load` does.
# `clip.tokenize` gives the same tokens as OpenAI's tokenizer, `clip.build_model(state_dict)` reads
# any of OpenAI's released checkpoints, and `CLIP` has OpenAI's constructor, parameter names and
# outputs. The tests in `tests/` hold us to that against open_clip and Hugging Face `transformers`.
# How `import clip_annotated` stays light while offering these names is the
# [package appendix](98a_package.ipynb).
#
# ## Chapters
#
# The core chapters follow the paper; the appendices, marked as such here and in the sidebar, hold
# what a user needs and a learner can skip: how checkpoints are read, your own data, the evaluation-set
# readers, the command line and the benchmarks. Each appendix sits right after the chapter it supports
# (2b, the checkpoint readers, before the pretrained weights of chapter 3 that call them), and the
# command line, the benchmarks and the GPU check close the book, in the order of their numbers.
#
# | | chapter | module | what it holds |
# |---|---|---|---|
# | 0 | [Preliminaries](00_prelims.ipynb) | `core` | notation of the paper, device and precision, reproducibility |
# | 1 | [The tokenizer](01_tokenizer.ipynb) | `tokenizer` | byte-level BPE, `tokenize`, `decode` |
# | 2 | [The model](02_model.ipynb) | `model` | ViT, modified ResNet, text Transformer, `CLIP`, `build_model`, the released configurations |
# | 2b | [Checkpoints](02b_checkpoints.ipynb) (appendix) | `checkpoints` | `download` checked against SHA256, `torch.save` and safetensors files read without running their code, Hugging Face and open_clip folders mapped to OpenAI's names |
# | 2c | [TorchScript archives](02c_torchscript.ipynb) (appendix) | `torchscript` | OpenAI's released archives read without running their code, zip bombs refused unread, `read_checkpoint` for every kind of file |
# | 3 | [Pretrained weights](03_pretrained.ipynb) | `pretrained` | `available_models`, `load` (OpenAI, Hugging Face, open_clip, our runs), `preprocess`, the QuickGELU trap, `get_tokenizer`, `export_model` |
# | 4 | [The contrastive loss](04_loss.ipynb) | `loss` | Figure 3's symmetric cross entropy, the temperature, the distributed gather with exact gradients |
# | 5 | [Data](05_data.ipynb) | `data` | the emoji set with its attributes and held-out split, the image transforms, bad samples counted, `collate`; your own pairs in one paragraph (appendix 5c) |
# | 5b | [Procedural scenes](05b_scenes.ipynb) | `scenes` | shapes, colours, sizes, counts and relations drawn from a description: the toy task, and the counting and binding tests |
# | 5c | [Readers](05c_readers.ipynb) (appendix) | `readers` | your image-caption pairs from a CSV file or webdataset shards (through the `webdataset` library), bad samples skipped and counted, `open_data` |
# | 5d | [The input pipeline](05d_loader.ipynb) (appendix) | `loader` | every kind of pairs decoded, augmented, tokenized and batched in `DataLoader` workers, the same batches with any number of them, `TrainBatches`, `make_datasets` |
# | 5e | [Run folders](05e_run_folder.ipynb) (appendix) | `runfolder` | checkpoints written atomically and complete enough to resume bit for bit, one run per folder under a lock (links and other people's folders refused), the metrics log |
# | 5f | [Retrieval](05f_retrieval.ipynb) | `retrieval` | held-out recall at k, image → text and text → image, beside chance; the held-out loss |
# | 5g | [Training options](05g_options.ipynb) (appendix) | `options` | every training option checked before a run starts, refused with one line naming it; a resume refused when its settings differ from the run's |
# | 6 | [Training](06_train.ipynb) | `train` | AdamW, warm-up and cosine, mixed precision, one exact step (accumulation included), the loop that repeats it (DDP, kill-and-resume, held-out retrieval), `TrainConfig` and its presets, fine-tuning and locked towers |
# | 6a | [A training run](06a_run.ipynb) | `run` | a toy run on scenes, the book's run on the emoji set, curves and `report.md`, the command line alone or under `torchrun` and every option, `book_model` |
# | 6b | [Your own data](06b_own_data.ipynb) (appendix) | – | a walk-through: digits and photos as CSV and shards, train, fine-tune, zero-shot, embed, export, `torchrun` |
# | 7 | [Zero-shot classification](07_zeroshot.ipynb) | `zeroshot` | class names as a classifier, prompt ensembling, top-k and per-class recall, chance and the majority class, paired intervals |
# | 7a | [Zero-shot on the book's tasks](07a_tasks.ipynb) | `tasks` | held-out emoji (skin tone, gender, kind) and scenes (colour, shape, count) on the book's model; one template against the ensemble |
# | 7b | [Evaluation data sets](07b_evalsets.ipynb) (appendix) | `evalsets` | CIFAR, STL-10, Pets, Caltech-101, Food-101, ImageNet and its shifted copies, with OpenAI's class names and templates; the paper's figures |
# | 7c | [Your own pictures](07c_pictures.ipynb) (appendix) | `pictures` | a folder per class or a CSV of paths and labels, unlabelled pictures and caption pairs; broken files skipped and counted |
# | 8 | [Linear probes](08_linear_probe.ipynb) | `probe` | logistic regression on frozen features, k-shot probes against zero-shot |
# | 9 | [Prompt engineering](09_prompt_engineering.ipynb) | `prompts` | which sentence carries a class name, ensembling in embedding or probability space |
# | 10 | [Robustness](10_robustness.ipynb) | `robustness` | distribution shifts, a supervised baseline, effective robustness |
# | 11 | [Bias](11_bias.ipynb) | `bias` | association probes with bootstrap intervals; a skew injected into training, each run against its balanced twin over seeds |
# | 12 | [Limitations](12_limitations.ipynb) | `limits` | counting, attribute binding, noisy supervision (prompt wording: chapter 9) |
# | 13 | [Looking inside](13_visualize.ipynb) | `viz` | t-SNE and UMAP, the modality gap, similarity heatmaps, retrieval grids, attention maps and rollout |
# | 14 | [Efficiency](14_efficiency.ipynb) | `efficiency` | throughput and memory against batch size, float32 against bfloat16/float16, `torch.compile`, epoch times for this machine |
# | 15 | [Broader impacts](15_ethics.ipynb) | `ethics` | the paper's bias and surveillance discussion, `safety_notice`, a model card |
# | 16 | [Experiments: why contrastive, and how it scales](16_experiments.ipynb) | `objectives` | Figure 2 rerun: captioning, bag of words and contrastive on one encoder, pictures needed for the same zero-shot accuracy; CLIP against `BaselineCLIP`; learning rate, batch size and negatives; training against held-out loss; accuracy against compute |
# | 98 | [The command line](98_cli.ipynb) (appendix) | `cli` | `clip-annotated train / reproduce / eval / predict` |
# | 98a | [The package](98a_package.ipynb) (appendix) | `__init__` | `import clip_annotated as clip`: OpenAI's names, each imported from its chapter on first use |
# | 98b | [The results table](98b_results.ipynb) (appendix) | `results` | `paper_table`: the paper's headline claims beside `make reproduce`'s run, on this page and in the README (`make readme`, `update_readme`) |
# | 99 | [Benchmarks](99_bench.ipynb) (appendix) | `bench` | our speed against open_clip's, in one process run: tokenizer, encoders, a training step, zero-shot evaluation |
# | 99a | [The GPU check](99a_gpucheck.ipynb) (appendix) | `gpucheck` | `make gpu-check`: the CUDA tests, training and zero-shot encoding against open_clip in bfloat16, a killed-and-resumed run, under one deadline |
# | 99b | [End to end](99b_e2e.ipynb) (appendix) | `e2e` | our trainer against open_clip's on the same shards and recipe, judged alike (`make bench-e2e`) |
# | 99c | [The input pipeline against open_clip's](99c_loader_bench.ipynb) (appendix) | `loaderbench` | pictures per second and main-process CPU against open_clip's data loader (`make bench-loader`) |
#

# %% [markdown]
# ## How the site is built
#
# The notebooks in `nbs/` are the source of truth. `nbdev_export` writes the package, `nbdev_test` runs
# every notebook, and the site's configuration is the top-level `_quarto.yml` (`nbs/_quarto.yml` is a
# link to it, where nbdev 2 looks for it). With [Quarto](https://quarto.org) installed, `nbdev_docs`
# builds the site; the docs build does not re-run the chapters (nbdev executes only their import and
# `show_doc` cells, to render the API blocks), so the pages show the outputs committed from a real run. Every chapter also has a plain-text twin in `nbs/_py/` (jupytext, `py:percent`) for
# reading and reviewing diffs.

# %%
#| echo: false
_ = footer()
