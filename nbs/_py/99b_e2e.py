# %% [markdown]
# # End to end: our trainer against open_clip's
#
# > `make bench-e2e`: our trainer and open_clip's train the same model on the same emoji shards with the same recipe, and one function judges both on held-out pictures.

# %%
#| default_exp e2e

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import argparse, contextlib, json, os, platform, re, time
from pathlib import Path
import torch
from clip_annotated.core import hardware
from clip_annotated.bench import open_clip_config
from clip_annotated.run import in_ipython

# %%
#| hide
import tempfile
from fastcore.test import test_eq, test_fail
from clip_annotated.core import footer

# %% [markdown]
# The [benchmarks appendix](99_bench.ipynb) times pieces. This one asks whether the two *trainers*
# reach the same place: our `clip-annotated train` and open_clip's training script
# (`open_clip_train.main`) train the same model on the same pairs with the same settings, and one
# function judges both. What it compares is held-out accuracy; the wall times it keeps are of a whole
# process (start-up, training, the trainer's own evaluation), the time a user waits for the command,
# comparable only on an otherwise idle machine, and no substitute for timing a training step. Chapter 16 shows its results and what they changed in the book.
#
# What both trainers are given, held equal:
#
# - **the pairs**: the book's emoji set written once as webdataset shards (`write_emoji_shards`), each
#   picture as a PNG with its plain name as the caption, the training split for training and the test
#   split held out; both trainers read the same shard files;
# - **the model**: `E2E_SETTINGS`' `CLIPConfig`, for open_clip written as one of its model configs
#   (`write_open_clip_config`), so that its checkpoint loads into our `CLIP` without renaming a key;
# - **the recipe**: steps, batch, peak learning rate, a linear warm-up over a tenth of the steps then a
#   cosine decay, AdamW's weight decay, betas and epsilon, float32, one thread, no `DataLoader` workers,
#   and the seed;
# - **the judge**: `judge` loads either kind of checkpoint into our `CLIP` and measures held-out
#   image→name and name→image retrieval with `evaluate_retrieval` on `EmojiDataset('test', train=False)`.
#
# What is left to each trainer is everything else: how it shuffles the shards, its crop, which
# parameters it decays, how it initialises the weights. An *arm* is a trainer with some of those
# choices changed: `'ours'`, `'open_clip'`, or ours with options joined by `+`: `buffer=N` (the
# training shards' shuffle buffer; it is filled to at most `readers.SHUFFLE_INITIAL` samples before
# the first leaves) and `zoom=LO:HI` (our crop's zoom range, see `TrainTransform`). The options reach
# our trainer through `ours_data_options`, which changes how the training loop's `make_datasets` opens
# the shards; nothing else of the trainer is touched. The default arms are the two trainers as they
# are and two ablations of ours, one difference each: open_clip's shuffle buffer size, and the crop's
# zoom range that chapter 3 used before it narrowed `TRAIN_ZOOM` (`ours+zoom=1.0:1.2`).

# %%
#| exports
E2E_SETTINGS = dict(model='MiniCLIP', model_overrides=dict(vision_patch_size=12), batch_size=64, lr=1e-3,
                    weight_decay=0.2, betas=(0.9, 0.98), eps=1e-6, precision='fp32', threads=1, workers=0)
E2E_MODEL_NAME = 'clip-annotated-e2e'      # the name open_clip knows our model config by
E2E_ARMS = ('ours', 'open_clip', 'ours+buffer=256', 'ours+zoom=1.0:1.2')   # the last: chapter 3's earlier crop zoom range

def e2e_config(settings: dict = E2E_SETTINGS):
    "The `CLIPConfig` both trainers build: `settings['model']` with its overrides."
    from clip_annotated.model import CONFIGS
    from dataclasses import replace
    return replace(CONFIGS[settings['model']], **settings['model_overrides'])

def e2e_warmup(steps: int) -> int: return max(1, steps // 10)

def parse_e2e_arm(spec: str) -> dict:
    "An arm from its name: 'ours', 'open_clip', or 'ours' with '+buffer=N' and/or '+zoom=LO:HI'."
    trainer, *options = spec.split('+')
    if trainer not in ('ours', 'open_clip'): raise ValueError(f"arm {spec!r}: starts with 'ours' or 'open_clip'")
    if trainer == 'open_clip' and options: raise ValueError(f"arm {spec!r}: open_clip's trainer runs as it is; options change ours")
    arm = dict(name=spec, trainer=trainer, shuffle_buffer=None, zoom=None)
    for option in options:
        key, _, value = option.partition('=')
        try:
            if key == 'buffer': arm['shuffle_buffer'] = int(value); ok = arm['shuffle_buffer'] >= 0
            elif key == 'zoom': arm['zoom'] = tuple(float(v) for v in value.split(':')); ok = len(arm['zoom']) == 2 and 0 < arm['zoom'][0] <= arm['zoom'][1]
            else: ok = False
        except ValueError: ok = False
        if not ok: raise ValueError(f"arm {spec!r}: option {option!r} is not buffer=N (N >= 0) or zoom=LO:HI (0 < LO <= HI)")
    return arm

def e2e_run_name(arm: dict, seed: int) -> str:
    "The run folder's name of an arm and a seed (letters, digits, '.', '+' and '-' only)."
    return re.sub(r'[^\w.+-]', '-', arm['name']) + f'_s{seed}'


# %%
test_eq(parse_e2e_arm('ours'), dict(name='ours', trainer='ours', shuffle_buffer=None, zoom=None))
test_eq(parse_e2e_arm('ours+buffer=256+zoom=1:1.05')['zoom'], (1.0, 1.05))
test_eq(parse_e2e_arm('ours+buffer=256')['shuffle_buffer'], 256)
test_fail(lambda: parse_e2e_arm('open_clip+buffer=256'), contains='runs as it is')
test_fail(lambda: parse_e2e_arm('ours+zoom=1.2:1'), contains='zoom=LO:HI')
test_fail(lambda: parse_e2e_arm('ours+crop=1'), contains='is not buffer')
test_eq(e2e_run_name(parse_e2e_arm('ours+zoom=1.0:1.2'), 3), 'ours+zoom-1.0-1.2_s3')
test_eq(e2e_warmup(250), 25)


# %% [markdown]
# The pairs and the model, written for both trainers. `write_emoji_shards` writes each split of the
# emoji set as shards of `per_shard` samples (once: a second call with the same arguments finds them
# made) and returns, per split, the brace range both trainers read. `open_clip_model_config` is the
# JSON open_clip reads for a model: our `open_clip_config` with the activation (QuickGELU, as ours)
# and the width of a vision head stated.

# %%
#| exports
def write_emoji_shards(folder, per_shard: int = 256, limit: int | None = None) -> dict[str, str]:
    "The emoji set's train and test splits as shards in `folder`/train and /test (PNG + plain name), made once; {split: brace range}."
    from clip_annotated.data import EmojiDataset
    from clip_annotated.readers import write_webdataset
    folder, params = Path(folder), dict(per_shard=per_shard, limit=limit)
    done, out = folder / 'shards.json', {}
    if done.is_file() and json.loads(done.read_text())['params'] == params: return json.loads(done.read_text())['splits']
    for split in ('train', 'test'):
        ds = EmojiDataset(split, train=False)
        n = len(ds) if limit is None else min(limit, len(ds))
        for old in (folder / split).glob('*.tar'): old.unlink()
        paths = write_webdataset(((ds.images[i], ds.records[i].name) for i in range(n)), folder / split, per_shard)
        out[split] = f"{folder / split}/{{00000..{len(paths) - 1:05d}}}.tar"
    done.write_text(json.dumps(dict(params=params, splits=out)))
    return out

def open_clip_model_config(cfg, quick_gelu: bool = True) -> dict:
    "open_clip's model config (the JSON of its model_configs folder) for one of our ViT `CLIPConfig`s."
    from clip_annotated.model import HEAD_WIDTH
    oc = open_clip_config(cfg)
    return dict(embed_dim=oc['embed_dim'], quick_gelu=quick_gelu, vision_cfg=dict(oc['vision_cfg'], head_width=HEAD_WIDTH),
                text_cfg=oc['text_cfg'])

def write_open_clip_config(cfg, folder, name: str = E2E_MODEL_NAME) -> Path:
    "`folder`/`name`.json, the model config open_clip finds after `open_clip.add_model_config(folder)`."
    path = Path(folder) / f'{name}.json'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(open_clip_model_config(cfg), indent=1) + '\n')
    return path


# %%
with tempfile.TemporaryDirectory() as d:
    shards = write_emoji_shards(d, per_shard=4, limit=10)
    test_eq(shards['train'], f"{d}/train/{{00000..00002}}.tar")
    from clip_annotated.readers import open_data
    items = list(open_data(shards['test']))
    test_eq(len(items), 10); test_eq(items[0][0].shape, (3, 48, 48))
    stamp = Path(d, 'train', '00000.tar').stat().st_mtime_ns
    test_eq(write_emoji_shards(d, per_shard=4, limit=10), shards); test_eq(Path(d, 'train', '00000.tar').stat().st_mtime_ns, stamp)
    oc = json.loads(write_open_clip_config(e2e_config(), d).read_text())
test_eq(oc['vision_cfg'], dict(image_size=48, layers=4, width=128, patch_size=12, head_width=64))
test_eq((oc['quick_gelu'], oc['text_cfg']['heads'], oc['text_cfg']['context_length']), (True, 2, 32))


# %% [markdown]
# The two trainers, each in a process of its own, as a person would run them. Ours is
# `clip_annotated.cli.main(['train', ...])` (what `clip-annotated train` runs) inside
# `ours_data_options`; open_clip's is `open_clip_train.main.main` after `open_clip.add_model_config`,
# in the Python that `OPEN_CLIP_TRAIN_PYTHON` names (its training package pins an older webdataset than
# ours, as in [the input-pipeline appendix](99c_loader_bench.ipynb)). Both get the same numbers: `--train-num-samples` is steps ×
# batch, which makes open_clip's single epoch exactly `steps` steps; ours is told `--steps` as well.
# Both processes run with `OMP_NUM_THREADS=1`; each returns its wall time and leaves its output in a log beside
# its run folder (`<run>.log`).

# %%
#| exports
@contextlib.contextmanager
def ours_data_options(shuffle_buffer: int | None = None, zoom: tuple[float, float] | None = None):
    "Within the block, our trainer's training shards (opened by `make_datasets`) use this shuffle buffer and crop zoom range."
    import clip_annotated.loader as loader
    from clip_annotated.readers import open_data
    from clip_annotated.pretrained import TrainTransform
    def opened(spec, *args, train: bool = False, **kw):
        if train and shuffle_buffer is not None: kw['shuffle_buffer'] = shuffle_buffer
        ds = open_data(spec, *args, train=train, **kw)
        if train and zoom is not None: ds.zoom, ds.augment = tuple(zoom), TrainTransform(ds.image_size, zoom)
        return ds
    before, loader.open_data = loader.open_data, opened
    try: yield
    finally: loader.open_data = before

def ours_train_argv(shards: dict, out, seed: int, steps: int, settings: dict = E2E_SETTINGS) -> list[str]:
    "The `clip-annotated train` options of one run of ours."
    s = settings
    return ['--model', s['model'], '--model-overrides', json.dumps(s['model_overrides']), '--train-data', shards['train'],
            '--dataset-type', 'webdataset', '--train-num-samples', str(steps * s['batch_size']), '--steps', str(steps),
            '--batch-size', str(s['batch_size']), '--lr', str(s['lr']), '--warmup', str(e2e_warmup(steps)),
            '--weight-decay', str(s['weight_decay']), '--betas', *map(str, s['betas']), '--eps', str(s['eps']),
            '--precision', s['precision'], '--threads', str(s['threads']), '--workers', str(s['workers']), '--seed', str(seed),
            '--out', str(out), '--no-progress', '--no-resume', '--eval-every', '0', '--ckpt-every', str(steps)]

def open_clip_train_argv(shards: dict, out, seed: int, steps: int, settings: dict = E2E_SETTINGS,
                         model: str = E2E_MODEL_NAME) -> list[str]:
    "The `open_clip_train.main` options of one run of open_clip's: the same settings in its spelling (logs in `out`)."
    s, out = settings, Path(out)
    return ['--model', model, '--train-data', shards['train'], '--dataset-type', 'webdataset',
            '--train-num-samples', str(steps * s['batch_size']), '--epochs', '1', '--batch-size', str(s['batch_size']),
            '--lr', str(s['lr']), '--warmup', str(e2e_warmup(steps)), '--wd', str(s['weight_decay']),
            '--beta1', str(s['betas'][0]), '--beta2', str(s['betas'][1]), '--eps', str(s['eps']), '--precision', s['precision'],
            '--workers', str(s['workers']), '--seed', str(seed), '--logs', str(out.parent), '--name', out.name,
            '--log-every-n-steps', '50', '--report-to', '']

_OURS_TRAINER = r'''
import json, sys
from clip_annotated.e2e import ours_data_options
from clip_annotated.cli import main
options = json.loads(sys.argv[1])
with ours_data_options(options['shuffle_buffer'], options['zoom']): main(['train', *sys.argv[2:]])
'''

_OPEN_CLIP_TRAINER = r'''
import sys, warnings
warnings.filterwarnings('ignore')
import open_clip
open_clip.add_model_config(sys.argv[1])
from open_clip_train.main import main
sys.exit(1 if main(sys.argv[2:]) == -1 else 0)
'''

def _trainer_process(cmd: list[str], out: Path, env: dict, what: str) -> float:
    "Run one trainer's process, its output in the log beside its run folder `out` (`out`.log); its wall time in seconds."
    import subprocess
    log = out.parent / f'{out.name}.log'
    t = time.perf_counter()
    with open(log, 'w') as f: r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, text=True)
    wall = time.perf_counter() - t
    if r.returncode:
        said = [l for l in log.read_text().splitlines(True) if not re.match(r'[IWE]\d{4} ', l)]   # not torch's glog lines
        raise RuntimeError(f"{what} failed (exit {r.returncode}); the end of its log {log}:\n" + ''.join(said[-15:]))
    return wall

def _trainer_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    return dict(env, OMP_NUM_THREADS='1', CLIP_ANNOTATED_PROGRESS='0', **extra)

def train_ours(arm: dict, shards: dict, out, seed: int, steps: int, settings: dict = E2E_SETTINGS) -> float:
    "Train one run of our trainer with `arm`'s options in a fresh process (this Python, this checkout); its wall time (s)."
    import sys
    import clip_annotated
    out = Path(out); out.parent.mkdir(parents=True, exist_ok=True)
    here = str(Path(clip_annotated.__file__).resolve().parents[1])          # the package this process imported
    options = json.dumps(dict(shuffle_buffer=arm['shuffle_buffer'], zoom=arm['zoom']))
    cmd = [sys.executable, '-c', _OURS_TRAINER, options, *ours_train_argv(shards, out, seed, steps, settings)]
    return _trainer_process(cmd, out, _trainer_env(PYTHONPATH=here), f"our trainer ({arm['name']}, seed {seed})")

def train_open_clip(python: str, config_dir, shards: dict, out, seed: int, steps: int, settings: dict = E2E_SETTINGS) -> float:
    "Train one run of open_clip's trainer in `python` (one with open-clip-torch[training]); its wall time (s)."
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise ValueError(f"open_clip Python {python!r} is not an executable file")
    out = Path(out); out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [python, '-c', _OPEN_CLIP_TRAINER, str(config_dir), *open_clip_train_argv(shards, out, seed, steps, settings)]
    return _trainer_process(cmd, out, _trainer_env(), f"open_clip's trainer (seed {seed})")


# %%
argv = ours_train_argv({'train': 'e2e/shards/train/{00000..00012}.tar'}, 'e2e/ours_s0', 0, 250)
test_eq(argv[argv.index('--warmup') + 1], '25'); test_eq(argv[argv.index('--train-num-samples') + 1], '16000')
from clip_annotated.run import parse_args
tc = parse_args(argv)
test_eq((tc.model_overrides, tc.steps, tc.batch_size, tc.lr, tc.weight_decay, tuple(tc.betas), tc.eps, tc.threads, tc.workers),
        (dict(vision_patch_size=12), 250, 64, 1e-3, 0.2, (0.9, 0.98), 1e-6, 1, 0))
oc_argv = open_clip_train_argv({'train': 'e2e/shards/train/{00000..00012}.tar'}, 'e2e/open_clip_s0', 0, 250)
test_eq((oc_argv[oc_argv.index('--logs') + 1], oc_argv[oc_argv.index('--name') + 1]), ('e2e', 'open_clip_s0'))
import clip_annotated.loader as _loader
from clip_annotated.readers import open_data
from clip_annotated.pretrained import TRAIN_ZOOM
with tempfile.TemporaryDirectory() as d:
    shards = write_emoji_shards(d, per_shard=4, limit=8)
    with ours_data_options(shuffle_buffer=3, zoom=(1.0, 1.0)):
        ds = _loader.open_data(shards['train'], train=True)
        held = _loader.open_data(shards['test'], train=False)
    test_eq((ds.shuffle_buffer, ds.zoom, ds.augment.zoom, held.shuffle_buffer), (3, (1.0, 1.0), (1.0, 1.0), 0))
    test_eq(_loader.open_data is open_data, True)                      # put back after the block
    test_eq(open_data(shards['train'], train=True).zoom, TRAIN_ZOOM)           # chapter 3's range otherwise


# %% [markdown]
# `judge` is the one measurement. Our runs leave `checkpoint.pt`; open_clip's leave
# `checkpoints/epoch_N.pt`, whose state dict (prefixed `module.` when it came from a data-parallel
# run) has OpenAI's key names, as ours, so it loads into a `CLIP` of the same config with
# `strict=True`: a mismatched config would fail there instead of being judged.

# %%
#| exports
def load_trained(run, cfg=None):
    "The model a run of either trainer left in folder `run`: ours (checkpoint.pt), or open_clip's (checkpoints/epoch_N.pt, the last) into a `CLIP` of `cfg`."
    from clip_annotated.model import create_model
    from clip_annotated.runfolder import load_checkpoint
    from clip_annotated.train import model_from_checkpoint
    run = Path(run)
    if (run / 'checkpoint.pt').is_file(): return model_from_checkpoint(load_checkpoint(run / 'checkpoint.pt'))[0]
    found = sorted(run.glob('checkpoints/epoch_*.pt'), key=lambda p: int(p.stem.split('_')[-1]))
    if not found: raise FileNotFoundError(f"{run} holds neither checkpoint.pt (ours) nor checkpoints/epoch_N.pt (open_clip's)")
    state = torch.load(found[-1], map_location='cpu', weights_only=True)['state_dict']
    model = create_model(cfg or e2e_config())
    model.load_state_dict({k.removeprefix('module.'): v for k, v in state.items()}, strict=True)
    return model

def judge(run, cfg=None, test=None) -> dict:
    "Held-out retrieval of the run in `run` on `test` (default: `EmojiDataset('test', train=False)`): image→name R@1 and R@5, name→image R@1."
    from clip_annotated.data import EmojiDataset
    from clip_annotated.retrieval import evaluate_retrieval
    test = test if test is not None else EmojiDataset('test', train=False)
    m = evaluate_retrieval(load_trained(run, cfg).eval(), test, device='cpu')
    return dict(i2t_R1=m['i2t_R@1'], i2t_R5=m['i2t_R@5'], t2i_R1=m['t2i_R@1'])


# %%
from clip_annotated.data import EmojiDataset
from clip_annotated.model import create_model
with tempfile.TemporaryDirectory() as d:
    torch.manual_seed(0)
    m = create_model(e2e_config())
    Path(d, 'checkpoints').mkdir()
    torch.save(dict(epoch=1, state_dict={'module.' + k: v for k, v in m.state_dict().items()}), Path(d, 'checkpoints', 'epoch_1.pt'))
    test_eq(torch.equal(load_trained(d).visual.conv1.weight, m.visual.conv1.weight), True)
    test_set = torch.utils.data.Subset(EmojiDataset('test', train=False), range(16))
    r = judge(d, test=test_set)
    test_eq(sorted(r), ['i2t_R1', 'i2t_R5', 't2i_R1']); assert 0 <= r['i2t_R1'] <= r['i2t_R5'] <= 1
test_fail(lambda: load_trained('/nowhere'), contains='neither checkpoint.pt')


# %% [markdown]
# `bench_e2e` puts it together in one folder (default `runs/bench-e2e`): the shards, open_clip's
# model config, a folder per run, and `results.jsonl`, one JSON line per judged run (arm, seed, steps,
# the arm's options, the three retrieval figures, the process's wall time and the load average
# before and after it). The seeds are the outer loop, so a run cut short leaves complete pairs of
# arms; a run already in `results.jsonl` is not trained again. `e2e_summary` gathers the lines into
# one JSON object (per arm, per seed) with the settings, the commit and the machine: what `save=`
# writes and what chapter 16 reads, in the same form as the committed `nbs/bench_e2e.json`.
# `make bench-e2e` runs it (`SEEDS`, `STEPS` and `E2E_ARMS` can be set on its command line), with
# open_clip's side in `.venv-openclip`, made on first use as for [`make bench-loader`](99c_loader_bench.ipynb); without
# `OPEN_CLIP_TRAIN_PYTHON` only our arms run.

# %%
#| exports
def _commit() -> str | None:
    "The commit (short) of the checkout this package was imported from, '+' when it has uncommitted changes; None outside git."
    import subprocess
    import clip_annotated
    root = Path(clip_annotated.__file__).resolve().parents[1]
    git = lambda *a: subprocess.run(['git', *a], cwd=root, capture_output=True, text=True, timeout=30)
    try: head, dirty = git('rev-parse', '--short', 'HEAD'), git('status', '--porcelain', '--untracked-files=no')
    except (OSError, subprocess.SubprocessError): return None
    return head.stdout.strip() + ('+' if dirty.stdout.strip() else '') if head.returncode == 0 else None

def read_jsonl(path) -> list[dict]:
    "The JSON objects of a JSON-lines file, one a line (none when there is no file)."
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []

E2E_CHANGES = {'buffer': "shuffle buffer {}", 'zoom': "crop zoom range {}"}

def e2e_summary(lines: list[dict], steps: int, settings: dict = E2E_SETTINGS, **about) -> dict:
    "The runs in `lines` (results.jsonl's) at `steps`, per arm and seed, with the settings they share; `about`: commit, hardware and the like."
    arms = {}
    for r in lines:
        if r['steps'] != steps: continue
        a = arms.setdefault(r['arm'], dict(trainer=parse_e2e_arm(r['arm'])['trainer'], changes=r['arm'].split('+')[1:], runs={}))
        a['runs'][str(r['seed'])] = {k: r[k] for k in ('i2t_R1', 't2i_R1', 'i2t_R5', 'wall_s', 'load_average') if k in r}
    changes = {c: E2E_CHANGES[c.split('=')[0]].format(c.split('=')[1]) for a in arms.values() for c in a['changes']}
    return dict(bench='e2e', **about, settings=dict(settings, steps=steps, warmup=e2e_warmup(steps)),
                reference={k: k for k in ('ours', 'open_clip') if k in arms}, changes=changes, arms=arms)

def _open_clip_version(python: str) -> str | None:
    import subprocess
    r = subprocess.run([python, '-c', 'import open_clip; print(open_clip.__version__)'], capture_output=True, text=True,
                       env=_trainer_env(), timeout=300)
    return r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None

def bench_e2e(seeds=(0, 1, 2, 3), steps: int = 250, arms=E2E_ARMS, folder=None, open_clip_python: str | None = None,
              save=None, per_shard: int = 256) -> dict:
    "Train every arm for every seed on the emoji shards, judge each run alike, one JSON line per run in `folder`/results.jsonl; the summary."
    import shutil
    from clip_annotated.core import atomic_write
    from clip_annotated.data import EmojiDataset
    from clip_annotated.run import runs_dir
    if steps < 1 or not seeds: raise ValueError(f"bench_e2e: steps ({steps}) must be at least 1 and seeds ({seeds}) not empty")
    python = os.environ.get('OPEN_CLIP_TRAIN_PYTHON') if open_clip_python is None else open_clip_python
    arms = [parse_e2e_arm(a) for a in arms]
    if not python and any(a['trainer'] == 'open_clip' for a in arms):
        print("open_clip's trainer is not run (set OPEN_CLIP_TRAIN_PYTHON to a Python with open-clip-torch[training]): our arms only.")
        arms = [a for a in arms if a['trainer'] == 'ours']
    folder, cfg = Path(folder) if folder is not None else runs_dir() / 'bench-e2e', e2e_config()
    shards = write_emoji_shards(folder / 'shards', per_shard)
    config_dir = write_open_clip_config(cfg, folder / 'open_clip_configs').parent
    results, test = folder / 'results.jsonl', EmojiDataset('test', image_size=cfg.image_resolution, train=False)
    done = {(r['arm'], r['seed'], r['steps']) for r in read_jsonl(results)}
    for seed in seeds:                                       # seeds outside: a run cut short leaves whole pairs
        for arm in arms:
            if (arm['name'], seed, steps) in done: continue
            out = folder / e2e_run_name(arm, seed)
            shutil.rmtree(out, ignore_errors=True)           # a run cut short before; open_clip refuses an existing folder
            load = os.getloadavg()[0]
            wall = (train_ours(arm, shards, out, seed, steps) if arm['trainer'] == 'ours' else
                    train_open_clip(python, config_dir, shards, out, seed, steps))
            line = dict(arm=arm['name'], seed=seed, steps=steps, trainer=arm['trainer'], shuffle_buffer=arm['shuffle_buffer'],
                        zoom=arm['zoom'], **judge(out, cfg, test), wall_s=wall, load_average=[load, os.getloadavg()[0]])
            with open(results, 'a') as f: f.write(json.dumps(line) + '\n')
            print(f"{arm['name']:24} seed {seed}: image→name R@1 {100 * line['i2t_R1']:5.1f}%, process wall time {wall:.0f} s")
    names = {a['name'] for a in arms}
    res = e2e_summary([r for r in read_jsonl(results) if r['arm'] in names and r['seed'] in seeds], steps,
                      commit=_commit(), hardware=hardware(), python=platform.python_version(), torch=torch.__version__,
                      open_clip=_open_clip_version(python) if python else None,
                      judge="held-out image→name R@1: clip_annotated.retrieval.evaluate_retrieval on EmojiDataset('test', train=False)",
                      wall_note="process wall time (start-up and evaluation included), one run at a time, the arms alternating within each seed: a speed comparison only on an otherwise idle machine")
    for name, a in res['arms'].items():
        r1 = [100 * r['i2t_R1'] for r in a['runs'].values()]
        print(f"{name:24} image→name R@1 over {len(r1)} seed(s): mean {sum(r1) / len(r1):.1f}%, per seed " + ', '.join(f"{x:.1f}" for x in r1))
    if save: atomic_write(save, lambda f: f.write((json.dumps(res, indent=1) + '\n').encode()))
    return res


# %%
lines = [dict(arm='ours', seed=0, steps=250, i2t_R1=0.2, t2i_R1=0.1, i2t_R5=0.5, wall_s=60.0),
         dict(arm='ours+zoom=1.0:1.2', seed=0, steps=250, i2t_R1=0.3, t2i_R1=0.1, i2t_R5=0.5),
         dict(arm='ours', seed=1, steps=20, i2t_R1=0.0, t2i_R1=0.0, i2t_R5=0.0)]
s = e2e_summary(lines, 250, commit='abc1234')
test_eq(list(s['arms']), ['ours', 'ours+zoom=1.0:1.2'])
test_eq(s['arms']['ours']['runs'], {'0': dict(i2t_R1=0.2, t2i_R1=0.1, i2t_R5=0.5, wall_s=60.0)})
test_eq((s['changes'], s['commit'], s['settings']['warmup']), ({'zoom=1.0:1.2': 'crop zoom range 1.0:1.2'}, 'abc1234', 25))
with tempfile.TemporaryDirectory() as d:
    Path(d, 'r.jsonl').write_text(''.join(json.dumps(l) + '\n' for l in lines))
    test_eq(read_jsonl(Path(d, 'r.jsonl')), lines); test_eq(read_jsonl(Path(d, 'none.jsonl')), [])

# %% [markdown]
# A short run on this machine (skipped under `nbdev_test`; both trainers when `OPEN_CLIP_TRAIN_PYTHON`
# is set): a few steps, so it shows that the pieces fit, not which trainer is better. The measured
# comparison is in [chapter 16](16_experiments.ipynb).

# %%
#| bench
with tempfile.TemporaryDirectory() as d: e2e_res = bench_e2e(seeds=(0,), steps=10, arms=('ours', 'open_clip'), folder=d)


# %% [markdown]
# ## The command line
#
# `make bench-e2e` runs `python -m clip_annotated.e2e`, whose options are `bench_e2e`'s; as in the
# benchmarks appendix, the guard calls `main` only when the module runs as a script.

# %%
#| exports
def main(argv: list[str] | None = None) -> dict:
    "Command line: `python -m clip_annotated.e2e [--seeds S ...] [--steps N] [--arms ARM ...] [--folder F] [--save F]`; the summary."
    p = argparse.ArgumentParser(prog='python -m clip_annotated.e2e',
                                description="Train our trainer and open_clip's end to end on the emoji shards and judge them alike.")
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3], help="seeds, each arm trained once per seed (default 0 1 2 3)")
    p.add_argument('--steps', type=int, default=250, help="optimiser steps of every run (default 250)")
    p.add_argument('--arms', nargs='+', default=list(E2E_ARMS), metavar='ARM',
                   help=f"ours, open_clip, or ours+buffer=N and/or +zoom=LO:HI (default: {' '.join(E2E_ARMS)})")
    p.add_argument('--folder', help="shards, runs and results.jsonl go here (default: runs/bench-e2e)")
    p.add_argument('--open-clip-python', help="a Python with open-clip-torch[training] (default $OPEN_CLIP_TRAIN_PYTHON)")
    p.add_argument('--save', help="write the summary as JSON to this file (make bench-e2e: runs/bench-e2e/bench_e2e.json)")
    args = p.parse_args(argv)
    print(f"clip_annotated e2e on {hardware()}, Python {platform.python_version()}, torch {torch.__version__}")
    return bench_e2e(seeds=tuple(args.seeds), steps=args.steps, arms=tuple(args.arms), folder=args.folder,
                     open_clip_python=args.open_clip_python, save=args.save)

if __name__ == '__main__' and not in_ipython(): main()

# %%
test_fail(lambda: main(['--steps', '0']), contains='steps (0) must be at least 1')

# %%
_ = footer()
