# %% [markdown]
# # The input pipeline against open_clip's loader
#
# > `make bench-loader`: pictures per second from our input pipeline and from open_clip's training data loader, on the same CSV of JPEGs and the same shards, with 0, 1 and 2 workers.

# %%
#| default_exp loaderbench

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import argparse, json, os, platform, tempfile
from pathlib import Path
import torch
from clip_annotated.core import hardware, markdown_table
from clip_annotated.bench import make_captions
from clip_annotated.run import in_ipython

# %%
#| hide
from IPython.display import Markdown, display
from fastcore.test import test_eq, test_fail
from clip_annotated.core import footer

# %% [markdown]
# How many pictures a second the training loop receives from [the input pipeline](05d_loader.ipynb)
# (`TrainBatches` over `open_data`, with training augmentation), against open_clip's own data loader
# (`open_clip_train.data.get_data`, which builds its `get_csv_dataset` or `get_wds_dataset`, with
# `open_clip.image_transform(224, is_train=True)` and its tokenizer) on the same files: a CSV of JPEG
# photos and webdataset shards of the same JPEGs, with 0, 1 and 2 `DataLoader` workers.
#
# The files are made once, in one folder: photo-like JPEGs at quality 90 (crops of scikit-learn's two
# sample photos, each tinted, noised and perhaps flipped, so that no two decode alike), captions from
# `make_captions` of the [benchmarks appendix](99_bench.ipynb), a CSV file with open_clip's column
# names and its paths relative to the file's folder, and shards that hold the same JPEG bytes. Both sides read one epoch at the same batch size;
# the first batch (which starts the workers and fills the shuffle buffers) is not timed, the rest are.
# The two sides cannot give the same pictures (each draws its own random crops), so what is checked
# before the figures count is that they deliver batches of the same shape. Two figures per side:
# pictures per second of wall time, and the CPU time per batch of the process
# that consumes the batches (`time.process_time`, all its threads, not its workers). With no workers
# that process decodes everything itself; with workers its share should fall to the cost of receiving
# a finished batch.
#
# open_clip's loader needs open_clip's training package (`open-clip-torch[training]`, which pins an
# older webdataset than ours), so it runs in its own Python, the one `OPEN_CLIP_TRAIN_PYTHON` names (or
# `open_clip_python=`): one subprocess serves all its measurements, reading requests on its standard
# input and timing with the same function as our side (its source is sent along). The two sides
# alternate, best of `repeats`. Without that Python, only our side is timed. `make bench-loader` makes
# such a Python in `.venv-openclip` and writes the results to `nbs/bench_loader.json`, which this
# appendix shows.

# %%
#| exports
LOADER_KINDS = {'csv': 'CSV of JPEGs', 'webdataset': 'webdataset shards'}   # open_data's and open_clip's dataset types

def loader_photos(n: int, size: tuple[int, int] = (256, 320), seed: int = 0):
    "Yield `n` different photo-like JPEGs (bytes, quality 90, `size` = (height, width)) cut from scikit-learn's sample photos."
    import io
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_image
    h, w = size
    if n < 1 or h < 1 or w < 1: raise ValueError(f"loader_photos: n={n} and size={size!r} must be positive")
    sources, rng = [load_sample_image(f) for f in ('china.jpg', 'flower.jpg')], np.random.default_rng(seed)
    for k in range(n):
        src = sources[k % 2]
        s = rng.uniform(0.5, 1.0) * min(src.shape[0] / h, src.shape[1] / w)     # a crop of the output's shape
        ch, cw = max(1, int(h * s)), max(1, int(w * s))
        y, x = rng.integers(0, src.shape[0] - ch + 1), rng.integers(0, src.shape[1] - cw + 1)
        a = np.asarray(Image.fromarray(src[y:y + ch, x:x + cw]).resize((w, h), Image.BILINEAR), dtype=np.float32)
        a = a * rng.uniform(0.8, 1.2, 3) + rng.normal(0, 4, a.shape)            # tint and noise
        if rng.random() < 0.5: a = a[:, ::-1]
        buf = io.BytesIO()
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(buf, format='JPEG', quality=90)
        yield buf.getvalue()

def write_loader_files(folder, n: int = 512, size: tuple[int, int] = (256, 320), shards: int = 8, seed: int = 0) -> dict:
    "Once per (n, size, shards, seed): `n` JPEGs with captions in `folder` as pairs.csv + images/ and as `shards` tar shards; {kind: what open_data reads}."
    import csv, json
    import webdataset as wds
    folder = Path(folder)
    params = dict(n=n, size=list(size), shards=shards, seed=seed)
    per_shard = -(-n // max(1, shards))
    spec = f"{folder / 'shards'}/{{00000..{-(-n // per_shard) - 1:05d}}}.tar"
    files = {'csv': str(folder / 'pairs.csv'), 'webdataset': spec}
    done = folder / 'loader_files.json'
    if done.is_file() and json.loads(done.read_text()) == params: return files
    (folder / 'images').mkdir(parents=True, exist_ok=True); (folder / 'shards').mkdir(exist_ok=True)
    sink, caps = None, make_captions(n, seed=seed)
    with open(folder / 'pairs.csv', 'w', newline='', encoding='utf-8') as f:
        rows = csv.writer(f); rows.writerow(['filepath', 'title'])
        for k, jpg in enumerate(loader_photos(n, size, seed)):
            (folder / 'images' / f'{k:06d}.jpg').write_bytes(jpg)
            rows.writerow([f'images/{k:06d}.jpg', caps[k]])
            if k % per_shard == 0:
                if sink: sink.close()
                sink = wds.TarWriter(str(folder / 'shards' / f'{k // per_shard:05d}.tar'), mtime=0)
            sink.write({'__key__': f'{k:09d}', 'jpg': jpg, 'txt': caps[k]})
    sink.close()
    done.write_text(json.dumps(params))
    return files


# %%
with tempfile.TemporaryDirectory() as d:
    files = write_loader_files(d, n=6, size=(48, 64), shards=2)
    jpgs = sorted(Path(d, 'images').glob('*.jpg'))
    test_eq(len(jpgs), 6); test_eq(len(set(p.read_bytes() for p in jpgs)), 6)      # six different photos
    test_eq(files['webdataset'].endswith('shards/{00000..00001}.tar'), True)
    stamp = jpgs[0].stat().st_mtime_ns
    test_eq(write_loader_files(d, n=6, size=(48, 64), shards=2), files); test_eq(jpgs[0].stat().st_mtime_ns, stamp)   # made once
    from clip_annotated.readers import open_data
    ds = open_data(files['csv'], train=True, image_size=32)
    test_eq(len(ds), 6); test_eq(ds[0][0].shape, (3, 32, 32))
    test_eq(sum(1 for _ in open_data(files['webdataset'], train=True, image_size=32)), 6)
test_fail(lambda: next(loader_photos(0)), contains='n=0')


# %% [markdown]
# `time_batches` is the stopwatch of both sides: it takes the image tensors of successive batches,
# leaves the first one out and returns what the rest took. `ours_loader_speed` runs it over one epoch of
# `TrainBatches`; `OpenClipLoader` runs it over one epoch of open_clip's loader in the other Python,
# building the `args` object that `get_data` reads from open_clip's command line: a single process
# (`distributed=False`, `world_size=1`), comma-separated CSV columns `filepath` and `title`, and
# `train_num_samples` for the shards, which open_clip needs because a tar file does not say how many
# samples it holds.

# %%
#| exports
def time_batches(batches) -> dict:
    "Consume an iterable of image batches; time all but the first (warm-up): pictures/s, CPU ms of this process per batch."
    import time
    t, it = time.perf_counter(), iter(batches)
    first = next(it, None)
    if first is None: raise ValueError("time_batches: the loader gave no batch at all")
    t0, c0, pictures, n = time.perf_counter(), time.process_time(), 0, 0
    for images in it: pictures, n = pictures + len(images), n + 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if n == 0: raise ValueError("time_batches: only one batch, nothing left to time after the warm-up")
    return dict(batches=n, pictures=pictures, shape=list(first.shape), first_batch_s=t0 - t, wall_s=wall,
                pictures_s=pictures / wall, cpu_ms_per_batch=cpu / n * 1e3)

def ours_loader_speed(spec: str, workers: int, batch_size: int = 64, image_size: int = 224, seed: int = 0) -> dict:
    "`time_batches` over epoch 0 of our TrainBatches of `open_data(spec, train=True)` with `workers` DataLoader workers."
    import gc
    from clip_annotated.readers import open_data
    from clip_annotated.loader import TrainBatches
    pipe = TrainBatches(open_data(spec, train=True, image_size=image_size, seed=seed), batch_size, seed=seed,
                        workers=workers, context_length=77)
    try: return time_batches(images for _, images, _ in pipe.epoch(0))
    finally:
        del pipe; gc.collect()                                  # ends the persistent workers before the next side runs

_OPEN_CLIP_SERVER = r'''
import argparse, gc, json, sys, warnings
warnings.filterwarnings('ignore')
import torch, webdataset, open_clip
from open_clip_train.data import get_data

TIME_BATCHES

tokenizer, transforms = open_clip.get_tokenizer('ViT-B-32'), {}

def measure(req):
    "One epoch of open_clip's training loader as its training script builds it, timed."
    size = req['image_size']
    if size not in transforms: transforms[size] = open_clip.image_transform(size, is_train=True)
    args = argparse.Namespace(
        train_data=req['data'], val_data=None, dataset_type=req['kind'], batch_size=req['batch_size'],
        workers=req['workers'], world_size=1, rank=0, local_rank=0, distributed=False, seed=req['seed'],
        train_num_samples=req['pictures'], train_data_upsampling_factors=None, dataset_resampled=False,
        csv_img_key='filepath', csv_caption_key='title', csv_separator=',', imagenet_val=None, imagenet_v2=None)
    data = get_data(args, (transforms[size], None), epoch=0, tokenizer=tokenizer)
    data['train'].set_epoch(0)
    try: return time_batches(images for images, _ in data['train'].dataloader)
    finally:
        del data; gc.collect()

print('READY ' + json.dumps(dict(open_clip=open_clip.__version__, torch=torch.__version__,
                                 webdataset=webdataset.__version__)), flush=True)
for line in sys.stdin:
    try: out = dict(ok=True, **measure(json.loads(line)))
    except Exception as e: out = dict(ok=False, error=f'{type(e).__name__}: {e}'.splitlines()[0])
    print('RESULT ' + json.dumps(out), flush=True)
'''

class OpenClipLoader:
    "open_clip's training data loader, timed in another Python (one with open-clip-torch[training]) by one subprocess run in `folder`."
    def __init__(self, python: str, folder):
        import inspect, subprocess
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise ValueError(f"open_clip Python {python!r} is not an executable file")
        self.python, self.log = python, tempfile.TemporaryFile('w+')
        script = _OPEN_CLIP_SERVER.replace('TIME_BATCHES', inspect.getsource(time_batches))
        env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}   # open_clip's packages only
        self.proc = subprocess.Popen([python, '-c', script], cwd=folder, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.versions = self._reply('READY')

    def _reply(self, tag: str) -> dict:
        "The next line the subprocess prints that starts with `tag`, as a dict; an error with its last words if it ends first."
        for line in self.proc.stdout:
            if line.startswith(tag + ' '): return json.loads(line[len(tag) + 1:])
        self.log.seek(0); last = (self.log.read().strip().splitlines() or ['no message'])[-1]
        raise RuntimeError(f"open_clip's loader in {self.python} ended early: {last}")

    def measure(self, kind: str, data: str, workers: int, batch_size: int, image_size: int, pictures: int, seed: int = 0) -> dict:
        "`time_batches` over one epoch of open_clip's loader of `data` (`kind` 'csv' or 'webdataset')."
        req = dict(kind=kind, data=data, workers=workers, batch_size=batch_size, image_size=image_size, pictures=pictures, seed=seed)
        self.proc.stdin.write(json.dumps(req) + '\n'); self.proc.stdin.flush()
        out = self._reply('RESULT')
        if not out.pop('ok'): raise RuntimeError(f"open_clip's loader on {kind} {data} with {workers} workers: {out['error']}")
        return out

    def close(self):
        "End the subprocess (it stops at the end of its input)."
        self.proc.stdin.close(); self.proc.wait(timeout=60); self.log.close()


# %% [markdown]
# `bench_loader` makes the files (in `folder`, or in a temporary folder it removes), then times every
# (data, workers) pair on both sides, which side goes first alternating, best of `repeats`: the most
# pictures per second and the least main-process CPU per batch. It prints `loader_table`, the table
# this appendix shows, with the machine and the load average before and after (on a busy machine the
# figures are not worth much); `save=` writes the results as JSON, which `loader_results` reads back.

# %%
#| exports
def _best(runs: list[dict], side: str, kind: str, workers: int, key: str, pick) -> float | None:
    vals = [r[key] for r in runs if (r['side'], r['kind'], r['workers']) == (side, kind, workers)]
    return pick(vals) if vals else None

def bench_loader(repeats: int = 3, pictures: int = 512, batch_size: int = 64, workers=(0, 1, 2), image_size: int = 224,
                 size: tuple[int, int] = (256, 320), shards: int = 8, folder=None, open_clip_python: str | None = None,
                 save=None, seed: int = 0) -> dict:
    "Pictures/s and main-process CPU per batch of our input pipeline and open_clip's loader, on the same CSV of JPEGs and shards."
    import itertools, shutil
    from clip_annotated.core import atomic_write
    python = os.environ.get('OPEN_CLIP_TRAIN_PYTHON') if open_clip_python is None else open_clip_python
    if not python: print("open_clip's loader is not timed (set OPEN_CLIP_TRAIN_PYTHON to a Python with open-clip-torch[training]): ours alone.")
    tmp = None if folder is not None else tempfile.mkdtemp(prefix='clip_annotated_loader_')
    files = write_loader_files(folder or tmp, pictures, size, shards, seed)
    load, runs, ref = [os.getloadavg()[0]], [], None
    try:
        ref = OpenClipLoader(python, folder or tmp) if python else None
        for r in range(repeats):
            for i, (kind, w) in enumerate(itertools.product(LOADER_KINDS, workers)):
                sides = ['ours', 'open_clip'][::1 if (r + i) % 2 == 0 else -1] if ref else ['ours']   # alternate
                for side in sides:
                    m = (ours_loader_speed(files[kind], w, batch_size, image_size, seed) if side == 'ours' else
                         ref.measure(kind, files[kind], w, batch_size, image_size, pictures, seed))
                    runs.append(dict(side=side, kind=kind, workers=w, repeat=r, **m))
                if ref and runs[-1]['shape'] != runs[-2]['shape']:
                    raise AssertionError(f"{kind} with {w} workers: our batches are {runs[-2 if sides[0] == 'ours' else -1]['shape']}, "
                                         f"open_clip's {runs[-1 if sides[0] == 'ours' else -2]['shape']}")
    finally:
        if ref: ref.close()
        if tmp: shutil.rmtree(tmp, ignore_errors=True)
    load.append(os.getloadavg()[0])
    rows = []
    for kind, w in itertools.product(LOADER_KINDS, workers):
        row = dict(kind=kind, workers=w)
        for side in ('ours', 'open_clip'):
            row[f'{side}_pictures_s'] = _best(runs, side, kind, w, 'pictures_s', max)
            row[f'{side}_cpu_ms'] = _best(runs, side, kind, w, 'cpu_ms_per_batch', min)
        row['ratio'] = row['open_clip_pictures_s'] and row['ours_pictures_s'] / row['open_clip_pictures_s']
        rows.append(row)
    res = dict(bench='loader', hardware=hardware(), python=platform.python_version(), torch=torch.__version__,
               open_clip=ref.versions if ref else None, pictures=pictures, jpeg_size=list(size), shards=shards,
               batch_size=batch_size, image_size=image_size, repeats=repeats, load_average=load, rows=rows, runs=runs)
    print(loader_table(res))
    if save: atomic_write(save, lambda f: f.write(json.dumps(res, indent=1).encode()))
    return res

def _cell(x, spec: str) -> str: return '–' if x is None else format(x, spec)

def loader_table(res: dict) -> str:
    "Markdown: a `bench_loader` result's rows (data, workers, pictures/s and main-process CPU ms per batch of both sides), then how it was measured."
    head = ['data', 'workers', 'ours pictures/s', 'open_clip pictures/s', 'ours / open_clip',
            'ours main CPU ms/batch', 'open_clip main CPU ms/batch']
    rows = [(LOADER_KINDS.get(r['kind'], r['kind']), r['workers'], _cell(r['ours_pictures_s'], ',.0f'),
             _cell(r['open_clip_pictures_s'], ',.0f'), _cell(r['ratio'], '.2f'), _cell(r['ours_cpu_ms'], ',.1f'),
             _cell(r['open_clip_cpu_ms'], ',.1f')) for r in res['rows']]
    oc = res.get('open_clip')
    h, w = res['jpeg_size']
    return (markdown_table(head, rows, align='lrrrrrr') +
            f"\n{res['pictures']} JPEGs of {h}×{w} px (quality 90) in {res['shards']} shards and a CSV file, to "
            f"{res['image_size']} px crops; batch {res['batch_size']}, first batch untimed, best of {res['repeats']}. "
            + (f"open_clip {oc['open_clip']} (webdataset {oc['webdataset']}, torch {oc['torch']}) in its own Python. "
               if oc else "open_clip's loader was not timed. ")
            + f"On {res['hardware']}, Python {res['python']}, torch {res['torch']}; "
              f"load average {res['load_average'][0]:.2f} before, {res['load_average'][-1]:.2f} after.\n")

def loader_results(path='bench_loader.json') -> dict | None:
    "The results `make bench-loader` saved at `path` (default: nbs/bench_loader.json, seen from nbs/), or None when there are none."
    path = Path(path)
    if not path.is_file(): return None
    res = json.loads(path.read_text())
    if res.get('bench') != 'loader' or 'rows' not in res: raise ValueError(f"{path} does not hold bench_loader results")
    return res


# %%
fake = dict(rows=[dict(kind='csv', workers=0, ours_pictures_s=300.0, open_clip_pictures_s=None, ratio=None, ours_cpu_ms=200.0,
                       open_clip_cpu_ms=None)], jpeg_size=[256, 320], pictures=512, shards=8, image_size=224, batch_size=64,
            repeats=3, open_clip=None, hardware='a CPU', python='3.11', torch='2', load_average=[0.5, 0.75])
t = loader_table(fake)
test_eq(t.splitlines()[2], '| CSV of JPEGs | 0 | 300 | – | – | 200.0 | – |')
assert 'load average 0.50 before, 0.75 after' in t and "not timed" in t
test_eq(loader_results('/nowhere/bench_loader.json'), None)
test_eq(time_batches([torch.zeros(4, 1)] * 3)['pictures'], 8)                 # the first batch is not counted
test_fail(lambda: time_batches([torch.zeros(4, 1)]), contains='only one batch')

# %% [markdown]
# The figures that `make bench-loader` measured and committed, when there are some; otherwise (with
# `nbdev_test --flags bench`) a small run on this machine, with open_clip's side when
# `OPEN_CLIP_TRAIN_PYTHON` is set:

# %%
loader_res = loader_results('bench_loader.json')
if loader_res: display(Markdown(loader_table(loader_res)))
else: print("No committed loader figures: `make bench-loader` measures them and writes nbs/bench_loader.json.")

# %%
#| bench
if loader_res is None: loader_res = bench_loader(repeats=1, pictures=128, batch_size=32)


# %% [markdown]
# ## The command line
#
# `make bench-loader` runs `python -m clip_annotated.loaderbench`, whose options are `bench_loader`'s;
# as in the benchmarks appendix, the guard calls `main` only when the module runs as a script.

# %%
#| exports
def main(argv: list[str] | None = None) -> dict:
    "Command line: `python -m clip_annotated.loaderbench [--pictures N] [--batch-size B] [--workers W ...] [--data F] [--save F]`; the results."
    p = argparse.ArgumentParser(prog='python -m clip_annotated.loaderbench',
                                description="Time our input pipeline against open_clip's training data loader on the same files.")
    p.add_argument('--repeats', type=int, default=3, help="best of this many timed runs (default 3)")
    p.add_argument('--pictures', type=int, default=512, help="JPEG files to make (default 512)")
    p.add_argument('--batch-size', type=int, default=64, help="pictures per batch (default 64)")
    p.add_argument('--workers', type=int, nargs='+', default=[0, 1, 2], help="DataLoader workers to try (default 0 1 2)")
    p.add_argument('--data', help="make (or reuse) the files in this folder (default: a temporary one)")
    p.add_argument('--open-clip-python', help="a Python with open-clip-torch[training] (default $OPEN_CLIP_TRAIN_PYTHON)")
    p.add_argument('--save', help="write the results as JSON to this file (make bench-loader: nbs/bench_loader.json)")
    args = p.parse_args(argv)
    print(f"clip_annotated loaderbench on {hardware()}, Python {platform.python_version()}, torch {torch.__version__}")
    return bench_loader(repeats=args.repeats, pictures=args.pictures, batch_size=args.batch_size, workers=tuple(args.workers),
                        folder=args.data, open_clip_python=args.open_clip_python, save=args.save)

if __name__ == '__main__' and not in_ipython(): main()

# %%
_ = footer()
