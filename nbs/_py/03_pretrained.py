# %% [markdown]
# # Pretrained weights
#
# > `load`, the drop-in for OpenAI's `clip.load`: released models downloaded once and checked, checkpoints read without running their code, and the preprocessing the models expect.

# %%
#| default_exp pretrained

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import hashlib, http.client, json, math, os, pickle, re, struct, sys, time, urllib.error, urllib.parse, urllib.request
import warnings, zipfile
from collections import OrderedDict
from dataclasses import asdict, replace
from pathlib import Path
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm
from clip_annotated.core import atomic_write, cache_root, get_device
from clip_annotated.model import (CONFIGS, CLIP, CLIPConfig, build_model, config_from_state_dict, convert_weights,
                                  create_model, uses_quick_gelu)
from clip_annotated.tokenizer import EOT, SOT, decode, default_tokenizer, tokenize

# %%
import time, io, builtins, copy, shutil, tempfile
import torch.nn.functional as F
from unittest import mock
from fastcore.test import test_eq, test_close, test_fail
from safetensors.torch import save_file   # the reference writer (a development dependency)
from sklearn.datasets import load_sample_image
import matplotlib.pyplot as plt
from clip_annotated.core import seed_everything, footer
from clip_annotated.model import create_model, count_parameters
from clip_annotated.tokenizer import tokenize
seed_everything(0)
_t0 = time.perf_counter()
scratch = Path(tempfile.mkdtemp(prefix='clip_annotated_03_'))   # every file this chapter writes goes here
def show(e): print(str(e).replace(str(scratch), '<scratch>'))   # error messages, with short paths


# %% [markdown]
# At the end of this chapter you can write `model, preprocess = load("ViT-B/32")` as with OpenAI's
# `clip` package, and also point `load` at a checkpoint file (OpenAI's TorchScript archives, a state
# dict saved with `torch.save`, an open_clip training checkpoint) or at a Hugging Face `transformers` or
# an open_clip CLIP directory. Whatever the source, the weights end up in the OpenAI layout that
# `build_model` of the model chapter reads. At the very end the road runs the other way: `export_model`
# writes any of these models as a folder that `transformers` or open_clip load with their own code, and
# `get_tokenizer` and `create_model_and_transforms` hand out what open_clip's functions of the same
# names do.
#
# ```{mermaid}
# flowchart LR
#   N["released name<br/>'ViT-B/32'"] --> D["download<br/>SHA256-checked cache"] --> A
#   A["TorchScript archive"] --> U["restricted unpickler<br/>tensors only, no code"] --> S
#   P["torch.save file<br/>.safetensors"] --> W["torch.load(weights_only=True)<br/>safetensors reader"] --> S
#   H["Hugging Face directory<br/>config.json + weights"] --> M["rename keys<br/>to OpenAI's layout"] --> S
#   O["open_clip directory<br/>open_clip_config.json + weights"] --> S
#   S["OpenAI-layout<br/>state dict"] --> B["build_model(sd, quick_gelu)"] --> R["(model, preprocess)"]
# ```
#
# Two rules run through the chapter. **No code from a checkpoint runs**: a checkpoint is data, and
# every reader below takes tensors out of it without executing anything it carries (the one exception
# is an explicit opt-in, `jit=True`, discussed with `load`). And **the
# activation is part of the model, not of the weights**: a state dict does not say whether it was
# trained with QuickGELU or GELU, so `load` has to be told, or to know from the source.
#
# ## The released models
#
# > "We train a series of 5 ResNets and 3 Vision Transformers. … They are denoted as RN50x4, RN50x16,
# > and RN50x64 respectively. For the Vision Transformers we train a ViT-B/32, a ViT-B/16, and a
# > ViT-L/14." (Radford et al. 2021, §2.5)
#
# > "For the ViT-L/14 we also pre-train at a higher 336 pixel resolution for one additional epoch to
# > boost performance similar to FixRes (Touvron et al., 2019). We denote this model as ViT-L/14@336px."
# > (Radford et al. 2021, §2.5)
#
# > "The largest ResNet model, RN50x64, took 18 days to train on 592 V100 GPUs while the largest Vision
# > Transformer took 12 days on 256 V100 GPUs." (Radford et al. 2021, §2.5)
#
# OpenAI published all nine as files under one URL each, and the URL carries its own checksum: the
# second-to-last path segment is the SHA256 of the file. The addresses below are facts from OpenAI's
# release (source: `_MODELS` in `clip/clip.py` of github.com/openai/CLIP; the same addresses appear in
# open_clip's `pretrained.py`, and `tests/test_pretrained.py` checks that they agree).

# %%
#| exports
_OPENAI_BASE = 'https://openaipublic.azureedge.net/clip/models'
MODEL_URLS: dict[str, str] = {name: f'{_OPENAI_BASE}/{sha}/{file}' for name, sha, file in [
    ('RN50', 'afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762', 'RN50.pt'),
    ('RN101', '8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599', 'RN101.pt'),
    ('RN50x4', '7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd', 'RN50x4.pt'),
    ('RN50x16', '52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa', 'RN50x16.pt'),
    ('RN50x64', 'be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c', 'RN50x64.pt'),
    ('ViT-B/32', '40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af', 'ViT-B-32.pt'),
    ('ViT-B/16', '5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f', 'ViT-B-16.pt'),
    ('ViT-L/14', 'b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836', 'ViT-L-14.pt'),
    ('ViT-L/14@336px', '3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02', 'ViT-L-14-336px.pt'),
]}

def available_models() -> list[str]:
    "Names of the nine models OpenAI released, as `load` accepts them."
    return list(MODEL_URLS)


# %% [markdown]
# Every released name has its configuration in `CONFIGS`, so the variant table, with the input
# resolution each model expects, comes from the model chapter rather than from a list typed twice.
# The parameter counts use the `meta` device: shapes without memory.

# %%
test_eq(available_models(), [n for n in CONFIGS if not n.startswith('MiniCLIP')])
rows = [f"{'model':16}{'image encoder':>15}{'res':>5}{'tokens':>8}{'embed':>7}{'params':>9}  sha256[:12]"]
for name, url in MODEL_URLS.items():
    cfg = CONFIGS[name]
    vit = cfg.vision_patch_size is not None
    grid = cfg.image_resolution // (cfg.vision_patch_size if vit else 32)   # ViT patches or ResNet stride 32
    enc = f"ViT /{cfg.vision_patch_size}" if vit else f"ResNet w{cfg.vision_width}"
    rows.append(f"{name:16}{enc:>15}{cfg.image_resolution:>5}{grid * grid:>8}{cfg.embed_dim:>7}"
                f"{count_parameters(cfg) / 1e6:>8.0f}M  {url.split('/')[-2][:12]}")
print('\n'.join(rows))


# %% [markdown]
# The resolution is the one thing `preprocess` needs to know: 224 pixels for most, 288, 384 and 448 for
# the scaled ResNets, and 336 for the fine-tuned ViT-L/14. "tokens" is the length of the sequence the
# image encoder works on (patches for a ViT, positions of the final feature map for a ResNet).
#
# ## Downloading once, and checking what arrived
#
# A checkpoint is hundreds of megabytes fetched over a network that can fail halfway, so `download`
# keeps four promises:
#
# 1. **Nothing half-written is ever at the destination.** Bytes go to a temporary file in the same
#    folder; only a complete transfer whose SHA256 matches is renamed into place, by the preliminaries'
#    `atomic_write` (`os.replace`, which is atomic). On any failure the temporary file is removed. A download killed outright (the
#    power, the OOM killer) cannot remove its own, so the next download of the same file removes
#    temporary files of it that nobody has written to for longer than the timeout: a live transfer
#    writes more often than that, or times out and cleans up after itself.
# 2. **A cached file is reused without a request**, after its hash is checked.
# 3. **It ends.** `timeout` bounds each wait for the server, `deadline` (an hour by default) the whole
#    transfer, so a server that trickles a byte at a time cannot hold a job forever.
# 4. **Errors say what to do.** They name the URL, and, because a machine without internet is common
#    (a compute node, a plane), they say where to put the file by hand and what its hash must be.
#
# The hash comes from OpenAI's URL layout unless one is given. The cache folder is the preliminaries'
# `cache_root()`: `$CLIP_ANNOTATED_CACHE` when that variable is set (the same folder as the data
# chapter's cache), else `~/.cache/clip_annotated`. We use `urllib` from the standard library, nothing
# more.

# %%
#| exports
class DownloadError(RuntimeError):
    "A download failed; the message names the URL and says how to place the file by hand."

def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    "SHA256 of a file, read in 1 MiB chunks, as lowercase hex."
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while block := f.read(chunk): h.update(block)
    return h.hexdigest()

def _sha_from_url(url: str) -> str | None:
    "OpenAI's layout: the second-to-last path segment of the URL is the file's SHA256."
    parts = urllib.parse.urlparse(url).path.split('/')
    return parts[-2].lower() if len(parts) >= 2 and re.fullmatch(r'[0-9a-fA-F]{64}', parts[-2]) else None


# %%
#| exports
def _by_hand(dest: Path, sha256: str) -> str:
    return (f"If this machine is offline, fetch the file elsewhere and place it at\n  {dest}\n"
            f"with SHA256 {sha256} (check with `sha256sum`); it is then used without a download.")

def _remove_stale_parts(dest: Path, older_than: float):
    "Delete the temporary `.<name>.*.part` files of `dest` nobody has written to for `older_than` seconds."
    if not dest.parent.is_dir(): return
    for part in dest.parent.iterdir():
        if part.name.startswith(f'.{dest.name}.') and part.name.endswith('.part'):
            try:
                if time.time() - part.stat().st_mtime > older_than: part.unlink()
            except OSError: pass                                        # gone already, or not ours to remove

def download(url: str, root: str | os.PathLike | None = None, sha256: str | None = None,
             progress: bool = True, timeout: float = 30.0, deadline: float = 3600.0) -> str:
    """Fetch `url` into `root` (default `cache_root()`) unless a file with the right SHA256 is there; returns its path.

    `timeout` bounds each wait for the server, `deadline` the whole transfer (seconds)."""
    sha256 = (sha256 or _sha_from_url(url) or '').lower()
    if not re.fullmatch(r'[0-9a-f]{64}', sha256):
        raise ValueError(f"no SHA256 for {url}: its path does not carry one (OpenAI's layout); pass sha256=")
    dest = cache_root(root) / os.path.basename(urllib.parse.urlparse(url).path)
    if dest.is_file():
        if sha256sum(dest) == sha256: return str(dest)             # the cache: no request at all
        warnings.warn(f"{dest} does not have SHA256 {sha256}; downloading {url} again")
    elif dest.exists(): raise DownloadError(f"{dest} exists and is not a file; move it away to download {url}")
    failed = lambda why: DownloadError(f"{why}.\n{_by_hand(dest, sha256)}")
    stale, stop = max(timeout, 60.0), time.monotonic() + deadline
    try:
        with urllib.request.urlopen(url, timeout=min(timeout, deadline)) as response:
            total = (response.headers.get('Content-Length') or '').strip()
            total = int(total) if re.fullmatch(r'[0-9]+', total) else None   # absent or malformed: size unknown
            _remove_stale_parts(dest, stale)                                 # leftovers of killed downloads
            def receive(out):                                                # raising discards the .part file
                h, got = hashlib.sha256(), 0
                read = getattr(response, 'read1', response.read)             # what has arrived: no waiting for 1 MiB
                with tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024, desc=dest.name,
                          disable=not progress) as bar:
                    while block := read(1 << 20):
                        out.write(block); out.flush(); h.update(block); got += len(block); bar.update(len(block))
                        if time.monotonic() > stop:
                            raise failed(f"{url} did not arrive within the deadline of {deadline:g} s ({got:,} bytes"
                                         f"{f' of {total:,}' if total is not None else ''} came); nothing was saved. "
                                         f"A slow but working link needs a larger download(..., deadline=)")
                if total is not None and got < total:
                    raise failed(f"the transfer of {url} stopped after {got:,} of {total:,} bytes; nothing was saved")
                if h.hexdigest() != sha256:
                    raise failed(f"{url} arrived with SHA256 {h.hexdigest()}, expected {sha256}; the file was discarded")
            atomic_write(dest, receive, suffix='.part')                      # the file is whole or absent
        _remove_stale_parts(dest, stale)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise failed(f"could not download {url} ({e})") from None
    return str(dest)


# %% [markdown]
# `urllib` also reads `file://` URLs, which lets us check the promises here without a network
# (`tests/test_pretrained.py` does the same over real HTTP on the loopback interface, with a server
# that cuts a transfer short and a port that refuses connections; `tests/test_robust_pretrained.py`
# adds a server that trickles one byte every half second, stopped by a small `deadline`, and one whose
# `Content-Length` is not a number). We publish a small file in OpenAI's layout, `<sha256>/<name>`,
# download it, and count the requests a second download makes.

# %%
payload = b'not a real checkpoint, but bytes are bytes' * 1000
sha = hashlib.sha256(payload).hexdigest()
(scratch / 'server' / sha).mkdir(parents=True)
(scratch / 'server' / sha / 'toy.pt').write_bytes(payload)
url = (scratch / 'server' / sha / 'toy.pt').as_uri()
cache = scratch / 'cache'

path = download(url, cache, progress=False)
test_eq(Path(path).read_bytes(), payload)
with mock.patch('urllib.request.urlopen', side_effect=AssertionError('no request expected')) as opened:
    test_eq(download(url, cache, progress=False), path)                 # served from the cache
test_eq(opened.call_count, 0)
print(f"downloaded once to {Path(path).relative_to(scratch)}, second call made {opened.call_count} requests")

# %% [markdown]
# A wrong hash (here, the file is published under somebody else's checksum) leaves nothing behind,
# neither at the destination nor as a temporary file, and the error tells the reader what happened
# and how to recover:

# %%
bad = scratch / 'server' / ('0' * 64)
bad.mkdir(); shutil.copy(scratch / 'server' / sha / 'toy.pt', bad / 'toy.pt')
cache2 = scratch / 'cache2'
try: download((bad / 'toy.pt').as_uri(), cache2, progress=False)
except DownloadError as e: show(e); err = e
assert 'expected 0000' in str(err) and 'place it at' in str(err)
test_eq(sorted(os.listdir(cache2)), [])                                  # no file, no leftover .part

# %% [markdown]
# The temporary file of a download that was killed (made by hand here, and dated an hour back) goes
# with the next download of the same file; and the cache folder follows `CLIP_ANNOTATED_CACHE`:

# %%
killed = cache2 / '.toy.pt.k1ll3d.part'
killed.write_bytes(payload[:100]); os.utime(killed, (time.time() - 3600,) * 2)
download(url, cache2, progress=False)
test_eq(sorted(os.listdir(cache2)), ['toy.pt'])
with mock.patch.dict(os.environ, {'CLIP_ANNOTATED_CACHE': str(scratch / 'elsewhere')}):
    test_eq(Path(download(url, progress=False)), scratch / 'elsewhere' / 'toy.pt')

# %% [markdown]
# ## Reading a checkpoint without running it
#
# A `.pt` file written by `torch.save` is a pickle, and a pickle is a small program: its opcodes can
# import any function by name and call it. Loading an untrusted pickle is running untrusted code. Here
# is a "checkpoint" whose loading would create a file (a stand-in for anything worse):

# %%
marker = scratch / 'payload-ran'
class Payload:
    "Pickles as a call to open(marker, 'w'): unpickling it creates the marker file."
    def __reduce__(self): return (builtins.open, (str(marker), 'w'))

torch.save({'visual.proj': torch.zeros(2, 2), 'extra': Payload()}, scratch / 'payload.pt')
pickle.loads(pickle.dumps(Payload())).close()             # a plain unpickle runs it ...
assert marker.exists(); marker.unlink()                   # ... and the file appears


# %% [markdown]
# So the rule of this chapter: **plain files are read only by readers that cannot run code**.
# `torch.load(..., weights_only=True)` unpickles with an allow-list of tensor-building functions and
# refuses everything else; a `.safetensors` file is a JSON header and raw bytes, with nothing to run at
# all. A file that needs more than that is refused, with an error that names it.

# %%
#| exports
class CheckpointError(ValueError):
    "A file or directory is not a checkpoint `load` can read; the message names it and says why."

class UnsafeCheckpointError(CheckpointError):
    "A checkpoint needs code to be run to be read (a pickled global outside the allow-list); it was refused."

def _refusal(message: str) -> tuple[str | None, str]:
    "(what was refused, or None; what is wrong otherwise) from torch's weights-only unpickling error, without its advice."
    detail = message.split('WeightsUnpickler error:', 1)[-1]
    detail = next((l.strip() for l in detail.splitlines() if l.strip()), 'no detail')
    for pattern, what in ((r'GLOBAL ([\w.]+)', 'the global {}'), (r'unrecognized function (\S+)', 'a call of {}'),
                          (r'allowlisted.* but got (.+)$', 'an object of {}')):
        if m := re.search(pattern, detail): return what.format(m[1]), ''
    return None, 'not a pickle of tensors' if 'weights' in detail.lower() else detail[:200]

def _torch_load(path: Path):
    "torch.load restricted to tensors and plain containers; refuses, naming the file, anything that needs more."
    try: return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        refused, problem = _refusal(str(e))
        if refused: raise UnsafeCheckpointError(
            f"{path} needs more than tensors to load: it asks for {refused}, which was refused (nothing in the file "
            f"was run). Ask its author for a state dict of tensors or a .safetensors file.") from None
                                                 # otherwise: bytes that are not a pickle of tensors, below
    except Exception as e:                       # torch.load fails in many ways on bytes that are not a checkpoint
        first = (str(e).splitlines() or [''])[0]
        problem = f"{type(e).__name__}: {first[:200]}"
        if 'legacy .tar' in first: problem = "torch's legacy .tar format, which cannot be read without running code"
        elif 'weights_only' in first: problem = type(e).__name__        # torch's advice: turn the safety off
    raise CheckpointError(f"{path} is not a checkpoint: torch.load cannot read it ({problem}); expected a file written "
                          f"by torch.save, a .safetensors file or a TorchScript archive") from None


# %%
try: _torch_load(scratch / 'payload.pt')
except UnsafeCheckpointError as e: show(e)
assert not marker.exists()                                # refused, and nothing ran

# %% [markdown]
# The refusal names what was refused, and it does not suggest turning the protection off. A file that
# is simply not a checkpoint (random bytes, a text file, a truncated pickle) is a different error,
# and says so:

# %%
(scratch / 'noise.pt').write_bytes(np.random.default_rng(0).bytes(256))
try: _torch_load(scratch / 'noise.pt')
except CheckpointError as e: show(e); noise_error = e
assert type(noise_error) is CheckpointError and 'is not a checkpoint' in str(noise_error)

# %% [markdown]
# ### The safetensors format
#
# A `.safetensors` file (Hugging Face's default, and open_clip's on the Hub) is eight bytes giving the
# length of a JSON header, the header (`{name: {dtype, shape, data_offsets}}`), then the tensors' raw
# little-endian bytes. Reading it needs no library: a few dozen lines that interpret bytes and never
# execute them. Since the header is data from the file, every entry is checked before it is used: an
# object with a known dtype, a shape and offsets of non-negative integers, and bytes that exist and
# match the shape. A header that claims more than the file holds is a truncated download, not a
# tensor.

# %%
#| exports
_ST_DTYPES = {'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,
              'I64': torch.int64, 'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8,
              'U8': torch.uint8, 'BOOL': torch.bool}

def _st_entry(path, name: str, info, size: int) -> tuple[torch.dtype, list[int], int, int]:
    "(dtype, shape, start, end) of one safetensors header entry, checked against a data section of `size` bytes."
    where = f"{path}: tensor {name!r}"
    if not isinstance(info, dict): raise CheckpointError(f"{where} is described by a {type(info).__name__}, not an object")
    if missing := [k for k in ('dtype', 'shape', 'data_offsets') if k not in info]:
        raise CheckpointError(f"{where} has no {' or '.join(missing)} in the header")
    dtype, shape, offsets = info['dtype'], info['shape'], info['data_offsets']
    if not (isinstance(dtype, str) and dtype in _ST_DTYPES):
        raise CheckpointError(f"{where} has unsupported dtype {dtype!r} (supported: {', '.join(_ST_DTYPES)})")
    naturals = lambda v: isinstance(v, list) and all(type(i) is int and i >= 0 for i in v)
    if not naturals(shape): raise CheckpointError(f"{where} has shape {shape!r}; expected a list of non-negative integers")
    if not (naturals(offsets) and len(offsets) == 2 and offsets[0] <= offsets[1]):
        raise CheckpointError(f"{where} has data_offsets {offsets!r}; expected [start, end] with 0 <= start <= end")
    (start, end), dtype = offsets, _ST_DTYPES[dtype]
    if end > size: raise CheckpointError(f"{where} claims bytes {start}..{end}, but the file holds {size:,} bytes of "
                                         f"data: it is cut short (an interrupted download or copy?)")
    if end - start != math.prod(shape) * dtype.itemsize:
        raise CheckpointError(f"{where} of shape {shape} needs {math.prod(shape) * dtype.itemsize:,} bytes, "
                              f"the header gives it {end - start:,} ({start}..{end})")
    return dtype, shape, start, end

def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    "Tensors of a .safetensors file: an 8-byte header length, a JSON header, raw little-endian bytes."
    if sys.byteorder != 'little': raise CheckpointError(f"{path}: reading safetensors needs a little-endian machine")
    with open(path, 'rb') as f:
        head, size = f.read(8), os.fstat(f.fileno()).st_size
        n = struct.unpack('<Q', head)[0] if len(head) == 8 else -1
        if not 1 < n < min(1 << 27, size - 7):
            raise CheckpointError(f"{path} is not a safetensors file (header length {n}, file size {size:,})")
        try: header = json.loads(f.read(n))
        except (ValueError, RecursionError) as e:
            raise CheckpointError(f"{path}: the safetensors header is not JSON ({e})") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{path}: the safetensors header is a JSON {type(header).__name__}, not an object")
        data = bytearray(f.read())                 # one buffer; every tensor is a view of it
    header.pop('__metadata__', None)
    out = {}
    for name, info in header.items():
        dtype, shape, start, end = _st_entry(path, name, info, len(data))
        t = torch.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize, offset=start) if end > start \
            else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(shape)
    return out


# %%
tensors = {'a': torch.randn(3, 4), 'b': torch.arange(5), 'c': torch.randn(2, 2).half(), 'e': torch.zeros(0, 3)}
save_file(tensors, scratch / 'toy.safetensors')
got = read_safetensors(scratch / 'toy.safetensors')
test_eq(sorted(got), sorted(tensors))
for k in tensors: assert torch.equal(got[k], tensors[k]) and got[k].dtype == tensors[k].dtype, k

# %% [markdown]
# The same file cut short by 10 bytes, as an interrupted copy leaves it, is refused by the tensor
# whose bytes are missing:

# %%
(scratch / 'cut.safetensors').write_bytes((scratch / 'toy.safetensors').read_bytes()[:-10])
try: read_safetensors(scratch / 'cut.safetensors')
except CheckpointError as e: show(e)
test_fail(lambda: read_safetensors(scratch / 'cut.safetensors'), contains='cut short')

# %% [markdown]
# ### OpenAI's TorchScript archives
#
# OpenAI published its models as TorchScript archives (`torch.jit.save` of traced models), and
# `clip.load` reads them with `torch.jit.load`, which rebuilds the modules *and their code*.
# `torch.load(weights_only=True)` refuses such archives outright. But an archive is a zip file we can
# read ourselves. Let us make one from a MiniCLIP, traced the way OpenAI's were, with `encode_image`
# and `encode_text` as extra methods, and look inside:

# %%
mini = create_model('MiniCLIP').eval()
with torch.no_grad():
    for p in mini.parameters(): p.add_(0.02 * torch.randn_like(p))       # away from the initialisation
images = torch.randn(2, 3, 48, 48)
texts = tokenize(['a red circle', 'a smiling face with sunglasses'], context_length=32)
with warnings.catch_warnings():
    warnings.simplefilter('ignore')                                      # tracer warnings: known, see below
    traced = torch.jit.trace_module(mini, {'forward': (images, texts), 'encode_image': (images,),
                                           'encode_text': (texts,)}, check_trace=False)
traced.save(scratch / 'MiniCLIP.pt')
with zipfile.ZipFile(scratch / 'MiniCLIP.pt') as zf:
    names = zf.namelist()
    linear = zf.read('MiniCLIP/code/__torch__/torch/nn/modules/linear.py').decode()
print(len(names), 'members, e.g.', [n for n in names if '/data/' not in n and '.debug_pkl' not in n][:6], '...')
print(f"{sum('/data/' in n for n in names)} tensor storages under MiniCLIP/data/")
print(linear.split('  def forward')[0])

# %% [markdown]
# Three kinds of member matter:
#
# - `data.pkl`, a pickle of the module tree. Each module is an object of a TorchScript class such as
#   `__torch__.torch.nn.modules.linear.Linear` whose state is a dict of its attributes: submodules,
#   tensors, flags. Tensors are calls to `torch._utils._rebuild_tensor_v2` on a *storage* that the pickle
#   names by a persistent id, `('storage', torch.FloatStorage, '7', 'cpu', numel)`.
# - `data/<key>`, the raw bytes of each storage.
# - `code/`, the TorchScript source of every class. We never run it, but its class headers say which
#   attributes are parameters and buffers (`__parameters__`, `__buffers__`, printed above), which is
#   exactly what `state_dict()` would return.
#
# So our reader unpickles `data.pkl` with a `pickle.Unpickler` whose `find_class`, the only door
# through which a pickle reaches a callable, hands out nothing but harmless things: a record class for
# TorchScript modules (it stores attributes and does nothing else), our own tensor-rebuilding function,
# `OrderedDict`, dtype markers for the storage types, and `list` or the identity in place of the
# helpers TorchScript uses for typed list and dict attributes of scripted modules. Any other global is
# refused. Storages are
# read as bytes from the zip; tensors are strided views of them, with bounds checked by
# `as_strided`. Then the module tree is walked, keeping the declared parameters and buffers.

# %%
#| exports
_STORAGE_DTYPES = {'FloatStorage': torch.float32, 'HalfStorage': torch.float16, 'BFloat16Storage': torch.bfloat16,
                   'DoubleStorage': torch.float64, 'LongStorage': torch.int64, 'IntStorage': torch.int32,
                   'ShortStorage': torch.int16, 'CharStorage': torch.int8, 'ByteStorage': torch.uint8,
                   'BoolStorage': torch.bool}

class ModuleRecord:
    "What a TorchScript module becomes when read without its code: a class name and a dict of attributes."
    qualname = '?'
    def __init__(self, *args): self.attrs = {}
    def __setstate__(self, state):
        if not isinstance(state, dict): raise UnsafeCheckpointError(f"module {self.qualname} has a non-dict state")
        self.attrs = state

def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    "A tensor as a strided view of a storage we read (torch._utils._rebuild_tensor_v2's arguments)."
    if not (isinstance(storage, torch.Tensor) and isinstance(offset, int)
            and all(isinstance(i, int) for i in (*size, *stride))):
        raise UnsafeCheckpointError("a tensor in data.pkl is not built from a storage and integer sizes")
    return storage.as_strided(tuple(size), tuple(stride), offset)   # raises if it reaches past the storage


# %%
#| exports
class _ArchiveUnpickler(pickle.Unpickler):
    "Unpickles a TorchScript archive's data.pkl into ModuleRecords and tensors; refuses every other global."
    _safe = {('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor, ('collections', 'OrderedDict'): OrderedDict,
             **{('torch.jit._pickle', f'build_{kind}list'): list for kind in ('int', 'double', 'bool', 'tensor')},
             ('torch.jit._pickle', 'restore_type_tag'): lambda value, type_str: value}   # typed attributes of scripted modules

    def __init__(self, zf: zipfile.ZipFile, prefix: str, path):
        super().__init__(zf.open(f'{prefix}data.pkl'))
        self.zf, self.prefix, self.path, self.storages, self.records = zf, prefix, path, {}, {}

    def find_class(self, module: str, name: str):
        if module == '__torch__' or module.startswith('__torch__.'):      # a TorchScript class: record it, never run it
            qual = f'{module}.{name}'
            return self.records.setdefault(qual, type(name, (ModuleRecord,), {'qualname': qual}))
        if module == 'torch' and name in _STORAGE_DTYPES: return _STORAGE_DTYPES[name]
        if (module, name) in self._safe: return self._safe[(module, name)]
        raise UnsafeCheckpointError(f"{self.path}: data.pkl asks for {module}.{name}, which is neither a tensor nor a "
                                    f"TorchScript module; refusing to load the file (nothing was run)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage' and isinstance(pid[1], torch.dtype)
                and re.fullmatch(r'\w+', str(pid[2]))):
            raise UnsafeCheckpointError(f"{self.path}: unexpected persistent id {pid!r} in data.pkl")
        dtype, key = pid[1], str(pid[2])
        if key not in self.storages:
            try: raw = bytearray(self.zf.read(f'{self.prefix}data/{key}'))
            except KeyError: raise CheckpointError(f"{self.path}: storage data/{key} is missing") from None
            self.storages[key] = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return self.storages[key]


# %%
#| exports
def _archive_prefix(zf: zipfile.ZipFile) -> str | None:
    "The folder of a TorchScript archive ('<name>/'), or None when the zip is not one."
    for n in zf.namelist():
        if n.count('/') == 1 and n.endswith('/data.pkl'):
            prefix = n[:-len('data.pkl')]
            if any(m == f'{prefix}constants.pkl' or m.startswith(f'{prefix}code/') for m in zf.namelist()): return prefix
    return None

def _declared_state(zf: zipfile.ZipFile, prefix: str) -> dict[str, set[str]]:
    "Parameter and buffer names of every class in the archive's code/, read as text (never executed)."
    declared = {}
    for n in zf.namelist():
        if not (n.startswith(f'{prefix}code/') and n.endswith('.py')): continue
        module = n[len(f'{prefix}code/'):-3].replace('/', '.')
        text = zf.read(n).decode('utf-8', 'replace')
        for cls, params, bufs in re.findall(r'^class (\w+)\(Module\):\n\s+__parameters__ = \[([^\]]*)\]\n'
                                            r'\s+__buffers__ = \[([^\]]*)\]', text, flags=re.M):
            declared[f'{module}.{cls}'] = set(re.findall(r'"(\w+)"', params + bufs))
    return declared

def _flatten(record: ModuleRecord, declared: dict, prefix: str = '') -> dict[str, torch.Tensor]:
    "The state dict of a module tree: declared parameters and buffers (all tensors if a class is undeclared)."
    keep, out = declared.get(record.qualname), {}
    for k, v in record.attrs.items():
        if isinstance(v, ModuleRecord): out.update(_flatten(v, declared, f'{prefix}{k}.'))
        elif isinstance(v, torch.Tensor) and (keep is None or k in keep): out[prefix + k] = v
    return out

def _read_archive(path) -> dict[str, torch.Tensor]:
    with zipfile.ZipFile(path) as zf:
        prefix = _archive_prefix(zf)
        if prefix is None: raise CheckpointError(f"{path} is a zip file but not a TorchScript archive")
        order = zf.read(f'{prefix}byteorder').decode().strip() if f'{prefix}byteorder' in zf.namelist() else 'little'
        if order != sys.byteorder: raise CheckpointError(f"{path} holds {order}-endian tensors; this machine is {sys.byteorder}-endian")
        root = _ArchiveUnpickler(zf, prefix, path).load()
        if not isinstance(root, ModuleRecord): raise CheckpointError(f"{path}: data.pkl does not hold a module")
        return _flatten(root, _declared_state(zf, prefix))

def read_torchscript_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    "The parameters and buffers of a TorchScript archive, as `state_dict()` would give them, without running its code."
    try: return _read_archive(path)
    except CheckpointError as e:                 # every refusal names the file, whichever part of the reader raised it
        if str(path) in str(e): raise
        raise type(e)(f"{path}: {e}") from None
    except Exception as e:                       # a damaged zip or data.pkl, a view past its storage, ...
        raise CheckpointError(f"{path} is not a TorchScript archive we can read ({type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0][:200]})") from None


# %% [markdown]
# The weights read this way are exactly the model's, name for name and bit for bit, and
# `torch.jit.load` was never called (we make sure by replacing it with a function that fails):

# %%
with mock.patch('torch.jit.load', side_effect=AssertionError('TorchScript must not be loaded')):
    sd = read_torchscript_weights(scratch / 'MiniCLIP.pt')
test_eq(list(sd), list(mini.state_dict()))
assert all(torch.equal(sd[k], v) for k, v in mini.state_dict().items())
print(f"{len(sd)} tensors read from the archive, all equal to the model's")

# %% [markdown]
# And an archive whose `data.pkl` carries the payload from above is refused at the first global it
# asks for, before anything runs:

# %%
with zipfile.ZipFile(scratch / 'payload-archive.pt', 'w') as zf:
    zf.writestr('archive/data.pkl', pickle.dumps(Payload(), protocol=2))
    zf.writestr('archive/constants.pkl', pickle.dumps((), protocol=2))
    zf.writestr('archive/version', '3\n')
try: read_torchscript_weights(scratch / 'payload-archive.pt')
except UnsafeCheckpointError as e: show(e)
assert not marker.exists()


# %% [markdown]
# ### One entry point for files
#
# `read_checkpoint` tells the formats apart by their first bytes (a zip starts with `PK`, a safetensors
# file with a header length followed by `{`), reads the tensors with the matching safe reader, and
# unwraps what training code puts around a state dict: open_clip's training checkpoints hold it under
# `'state_dict'`, the training chapter of this book writes it under `'model'` (beside the optimiser,
# scheduler and RNG states), and `DistributedDataParallel` prefixes every key with `module.`. A
# checkpoint may also say which activation its model used, as a top-level `'quick_gelu': True/False`
# (the training chapter stores `uses_quick_gelu(model)` there); `load` honours it.

# %%
#| exports
def checkpoint_format(path: str | os.PathLike) -> str:
    "'torchscript', 'safetensors' or 'torch' (a torch.save file), judged from the file's first bytes."
    with open(path, 'rb') as f: head = f.read(9)
    if head[:8] and len(head) == 9 and head[8:9] == b'{' and not head.startswith(b'PK'): return 'safetensors'
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if _archive_prefix(zf) is not None: return 'torchscript'
    return 'torch'

def _unwrap(obj, path) -> dict[str, torch.Tensor]:
    "The state dict inside a checkpoint: obj, obj['state_dict'] or obj['model'] (our training checkpoints), without 'module.'."
    for key in ('state_dict', 'model'):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict): obj = obj[key]; break
    if not (isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())):
        what = f"a dict with keys {list(obj)[:6]}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise CheckpointError(f"{path} holds {what}; expected a state dict (name -> tensor), {{'state_dict': ...}} "
                              f"or {{'model': ...}}")
    if all(k.startswith('module.') for k in obj): obj = {k[len('module.'):]: v for k, v in obj.items()}
    return obj

def _read_file(path: Path) -> tuple[dict[str, torch.Tensor], bool | None]:
    "The state dict in a checkpoint file and the activation it records (`'quick_gelu'` at its top level), if any."
    if not path.is_file(): raise FileNotFoundError(f"no checkpoint file at {path}")
    if path.stat().st_size == 0: raise CheckpointError(f"{path} is not a checkpoint: the file is empty (an interrupted copy?)")
    fmt = checkpoint_format(path)
    if fmt == 'torchscript': return read_torchscript_weights(path), True       # OpenAI's archives: QuickGELU
    obj = read_safetensors(path) if fmt == 'safetensors' else _torch_load(path)
    stored = obj.get('quick_gelu') if isinstance(obj, dict) else None
    if isinstance(obj, dict) and isinstance(stored, bool): obj = {k: v for k, v in obj.items() if k != 'quick_gelu'}
    return _unwrap(obj, path), stored if isinstance(stored, bool) else None

def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    "The state dict in a checkpoint file (TorchScript archive, torch.save file, .safetensors), read without running code."
    return _read_file(Path(path))[0]


# %%
torch.save({'epoch': 3, 'state_dict': {f'module.{k}': v for k, v in mini.state_dict().items()}}, scratch / 'train.pt')
(scratch / 'run').mkdir(exist_ok=True)                # a run folder of the training chapter: {'model': ..., 'optimizer': ...}
torch.save({'model': mini.state_dict(), 'optimizer': {'state': {}}, 'data': {'step': 3}}, scratch / 'run' / 'checkpoint.pt')
for f in ('MiniCLIP.pt', 'train.pt', 'run/checkpoint.pt'):
    sd = read_checkpoint(scratch / f)
    assert all(torch.equal(sd[k], v) for k, v in mini.state_dict().items()) and len(sd) == len(mini.state_dict())
    print(f"{f:12} {checkpoint_format(scratch / f):12} {len(sd)} tensors")
test_fail(lambda: read_checkpoint(scratch / 'payload.pt'), contains='needs more than tensors')
test_fail(lambda: read_checkpoint(scratch / 'payload-archive.pt'), contains='asks for io.open')
assert not marker.exists()

# %% [markdown]
# Tensors that read cleanly can still describe no CLIP a model can be built from. The architecture is
# read off a few of them (the model chapter's `config_from_state_dict`), so those are checked first,
# by name: each has the number of dimensions its role needs; the text width, the length of
# `ln_final.weight`, leaves at least one attention head (heads = width // 64); and `token_embedding`
# has a row for every id the tokenizer can produce. Without the checks, an `ln_final.weight` of 7
# numbers fails deep inside the model's constructor with a division by zero, and a `token_embedding` of
# 10 rows builds a 10-word model that fails at its first `encode_text`.

# %%
#| exports
_DIMS = {'token_embedding.weight': 2, 'positional_embedding': 2, 'ln_final.weight': 1, 'text_projection': 2,
         'visual.conv1.weight': 4, 'visual.positional_embedding': 2, 'visual.proj': 2,        # a ViT
         'visual.layer1.0.conv1.weight': 4, 'visual.attnpool.positional_embedding': 2}          # a ResNet

def _checked_config(sd: dict[str, torch.Tensor], path) -> CLIPConfig:
    "The architecture of an OpenAI-layout state dict, its defining tensors checked first (a CheckpointError names the key)."
    if any(k.startswith('text.') for k in sd):
        raise CheckpointError(f"{path}: keys start with 'text.' (an open_clip CustomTextCLIP); only the standard "
                              f"CLIP layout with OpenAI's key names can be loaded")
    def refuse(key, why): return CheckpointError(f"{path}: {key} has shape {list(sd[key].shape)}; {why}")
    for key, dims in _DIMS.items():
        if key in sd and (sd[key].dim() != dims or 0 in sd[key].shape):
            raise refuse(key, f"expected a {dims}-dimensional tensor of non-zero sizes")
    vision = ('visual.conv1.weight', 64) if 'visual.proj' in sd else ('visual.layer1.0.conv1.weight', 2)  # ViT, ResNet
    for (key, least), what in ((('ln_final.weight', 64), 'text'), (vision, 'vision')):
        if key in sd and sd[key].shape[0] < least:
            raise refuse(key, f"a {what} width of {sd[key].shape[0]} leaves no attention heads (at least {least} needed)")
    vocab = default_tokenizer().vocab_size
    if 'token_embedding.weight' in sd and (rows := sd['token_embedding.weight'].shape[0]) < vocab:
        raise refuse('token_embedding.weight', f"its {rows:,} rows disagree with the tokenizer's vocabulary of {vocab:,} "
                                               f"tokens (encode_text would fail on ids >= {rows:,})")
    try: return config_from_state_dict(sd)
    except (KeyError, ValueError, IndexError, TypeError, ArithmeticError) as e:
        raise CheckpointError(f"{path} is not a CLIP checkpoint in OpenAI's layout: {e}") from None


# %%
for key, bad in (('ln_final.weight', torch.ones(7)), ('token_embedding.weight', torch.zeros(10, 128))):
    sd = {**mini.state_dict(), key: bad}
    try: _checked_config(sd, 'broken.pt')
    except CheckpointError as e: show(e)
    test_fail(lambda: _checked_config(sd, 'broken.pt'), contains=f'broken.pt: {key} has shape {list(bad.shape)}')
test_eq(_checked_config(mini.state_dict(), 'mini'), config_from_state_dict(mini.state_dict()))

# %% [markdown]
# ## Hugging Face checkpoints
#
# `transformers` stores CLIP in a directory: `config.json` and `model.safetensors` (older ones:
# `pytorch_model.bin`, which goes through `torch.load(weights_only=True)`). The tensors are the same
# numbers under other names, with three differences of layout:
#
# | Hugging Face | OpenAI | |
# |---|---|---|
# | `text_model.embeddings.token_embedding` | `token_embedding` | |
# | `text_model.embeddings.position_embedding.weight` | `positional_embedding` | |
# | `text_model.final_layer_norm` | `ln_final` | |
# | `vision_model.embeddings.class_embedding` | `visual.class_embedding` | |
# | `vision_model.embeddings.patch_embedding` | `visual.conv1` | |
# | `vision_model.embeddings.position_embedding.weight` | `visual.positional_embedding` | |
# | `vision_model.pre_layrnorm` (sic) / `post_layernorm` | `visual.ln_pre` / `visual.ln_post` | |
# | `text_model.encoder.layers.{i}` / `vision_model.encoder.layers.{i}` | `transformer.resblocks.{i}` / `visual.transformer.resblocks.{i}` | |
# | `…layer_norm1`, `…layer_norm2` | `…ln_1`, `…ln_2` | |
# | `…mlp.fc1`, `…mlp.fc2` | `…mlp.c_fc`, `…mlp.c_proj` | |
# | `…self_attn.out_proj` | `…attn.out_proj` | |
# | `…self_attn.q_proj`, `k_proj`, `v_proj` | `…attn.in_proj_weight`, `in_proj_bias` | stacked q, k, v |
# | `visual_projection.weight` `[embed, width]` | `visual.proj` `[width, embed]` | transposed |
# | `text_projection.weight` `[embed, width]` | `text_projection` `[width, embed]` | transposed |
#
# HF stores the projections as `nn.Linear` weights (`y = x Wᵀ`), OpenAI as matrices applied on the
# right (`y = x W`), hence the transposes. The `position_ids` buffers HF once saved are dropped.
#
# Unlike a state dict, `config.json` names the activation (`hidden_act`), so the QuickGELU question
# below answers itself for HF checkpoints. It also fixes two things our `CLIP` assumes and must check:
# 64-dimensional attention heads (OpenAI's code derives the number of heads as width // 64) and
# LayerNorm's ε of 1e-5. The configuration is read as carefully as the weights: it must be UTF-8 JSON
# holding an object, each tower an object of positive integer sizes, and the index of a sharded
# checkpoint must have its `weight_map`; anything else is a `CheckpointError` naming the file and
# the key.

# %%
#| exports
_HF_RENAMES = [  # (Hugging Face, OpenAI), applied in order to every key
    ('text_model.embeddings.token_embedding.', 'token_embedding.'),
    ('text_model.embeddings.position_embedding.weight', 'positional_embedding'),
    ('text_model.encoder.layers.', 'transformer.resblocks.'),
    ('text_model.final_layer_norm.', 'ln_final.'),
    ('vision_model.embeddings.class_embedding', 'visual.class_embedding'),
    ('vision_model.embeddings.patch_embedding.', 'visual.conv1.'),
    ('vision_model.embeddings.position_embedding.weight', 'visual.positional_embedding'),
    ('vision_model.pre_layrnorm.', 'visual.ln_pre.'),
    ('vision_model.encoder.layers.', 'visual.transformer.resblocks.'),
    ('vision_model.post_layernorm.', 'visual.ln_post.'),
    ('.self_attn.out_proj.', '.attn.out_proj.'),
    ('.layer_norm1.', '.ln_1.'), ('.layer_norm2.', '.ln_2.'), ('.mlp.fc1.', '.mlp.c_fc.'), ('.mlp.fc2.', '.mlp.c_proj.'),
]
_HF_TRANSPOSED = {'visual_projection.weight': 'visual.proj', 'text_projection.weight': 'text_projection'}

def hf_to_openai(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    "A `transformers` CLIPModel state dict renamed to OpenAI's layout (q/k/v stacked, projections transposed)."
    out, qkv, unknown = {}, {}, []
    for k, v in hf.items():
        if k.endswith('position_ids'): continue                              # a buffer, not a weight
        if k in _HF_TRANSPOSED: out[_HF_TRANSPOSED[k]] = v.t().contiguous(); continue
        new = k
        for a, b in _HF_RENAMES: new = new.replace(a, b)
        if m := re.fullmatch(r'(.*)\.self_attn\.([qkv])_proj\.(weight|bias)', new):
            qkv.setdefault((m[1], m[3]), {})[m[2]] = v
        elif new != k or k == 'logit_scale': out[new] = v
        else: unknown.append(k)
    if unknown: raise CheckpointError(f"not a Hugging Face CLIPModel state dict: unknown keys {unknown[:5]}")
    for (block, kind), parts in qkv.items():
        if set(parts) != {'q', 'k', 'v'}: raise CheckpointError(f"{block}: q, k and v projections incomplete")
        out[f'{block}.attn.in_proj_{kind}'] = torch.cat([parts['q'], parts['k'], parts['v']])   # [3·width, …]
    return out


# %% [markdown]
# The mapping must lose nothing. Running the table backwards gives the inverse, `openai_to_hf`, which
# the export section at the end of the chapter uses to write Hugging Face folders: the renames in
# reverse order (so the vision prefixes, which contain the text ones, are handled first), q, k and v
# split back into three, the projections transposed back. Only a Vision Transformer has a
# `transformers` counterpart, so a ResNet key is refused.

# %%
#| exports
def openai_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    "An OpenAI-layout ViT CLIP state dict renamed to `transformers`' CLIPModel layout (the inverse of hf_to_openai)."
    out, unknown = {}, []
    for k, v in sd.items():
        if k in _HF_TRANSPOSED.values():
            out[next(a for a, b in _HF_TRANSPOSED.items() if b == k)] = v.t().contiguous(); continue
        new = k
        for a, b in reversed(_HF_RENAMES): new = new.replace(b, a)
        if m := re.fullmatch(r'(.*)\.attn\.in_proj_(weight|bias)', new):
            for part, t in zip('qkv', v.chunk(3)): out[f'{m[1]}.self_attn.{part}_proj.{m[2]}'] = t   # [width, …] each
        elif new != k or k == 'logit_scale': out[new] = v
        else: unknown.append(k)
    if unknown: raise ValueError(f"no Hugging Face name for {unknown[:5]}: only ViT CLIP state dicts in OpenAI's layout map")
    return out


# %%
hf_sd = openai_to_hf(mini.state_dict())
print([k for k in hf_sd if '.layers.0.' in k and 'text' in k][:4], '...')
assert all(k.startswith(('text_model.', 'vision_model.', 'text_projection', 'visual_projection', 'logit_scale')) for k in hf_sd)
assert torch.equal(hf_sd['text_model.encoder.layers.0.self_attn.q_proj.weight'], mini.transformer.resblocks[0].attn.in_proj_weight[:128])
back = hf_to_openai(hf_sd)
test_eq(sorted(back), sorted(mini.state_dict()))
assert all(torch.equal(back[k], v) for k, v in mini.state_dict().items())
test_fail(lambda: openai_to_hf(create_model('MiniCLIP-RN').state_dict()), contains="only ViT CLIP")

# %%
#| exports
_HF_DEFAULTS = {  # transformers' CLIPTextConfig / CLIPVisionConfig defaults, for keys a config.json leaves out
    'text_config': dict(hidden_size=512, num_attention_heads=8, intermediate_size=2048, hidden_act='quick_gelu',
                        layer_norm_eps=1e-5),
    'vision_config': dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072, hidden_act='quick_gelu',
                          layer_norm_eps=1e-5)}

def _read_json(file: Path) -> dict:
    "The JSON object in `file`; a CheckpointError naming the file if it is unreadable, empty, not UTF-8 JSON, or not an object."
    try: text = file.read_bytes().decode('utf-8')
    except OSError as e: raise CheckpointError(f"{file} cannot be read ({e.strerror})") from None
    except UnicodeDecodeError as e: raise CheckpointError(f"{file} is not UTF-8 text (byte {e.start}); expected JSON") from None
    if not text.strip(): raise CheckpointError(f"{file} is empty; expected a JSON object (an interrupted copy?)")
    try: obj = json.loads(text)
    except (ValueError, RecursionError) as e: raise CheckpointError(f"{file} is not valid JSON ({e})") from None
    if not isinstance(obj, dict): raise CheckpointError(f"{file} holds a JSON {type(obj).__name__}, expected an object {{...}}")
    return obj

def _hf_quick_gelu(config: dict, file) -> bool:
    "Check a CLIPModel config.json against what our CLIP can hold; True if it uses QuickGELU."
    if config.get('model_type') != 'clip':
        raise CheckpointError(f"{file} describes model_type {config.get('model_type')!r}, not a CLIPModel "
                              f"('clip'); only full CLIP models (both towers) can be loaded")
    acts = set()
    for tower, defaults in _HF_DEFAULTS.items():
        given = config.get(tower) or config.get(f'{tower}_dict') or {}
        if not isinstance(given, dict):
            raise CheckpointError(f"{file}: {tower} is a {type(given).__name__} ({given!r:.40}), expected an object of sizes")
        c = {**defaults, **given}
        for key in ('hidden_size', 'num_attention_heads', 'intermediate_size'):
            if type(c[key]) is not int or c[key] < 1:
                raise CheckpointError(f"{file}: {tower}.{key} is {c[key]!r}, expected a positive integer")
        width, heads = c['hidden_size'], c['num_attention_heads']
        if width != 64 * heads:
            raise CheckpointError(f"{file}: {tower} has {heads} heads of size {width / heads:g}; our CLIP, like "
                                  f"OpenAI's, uses heads of size 64 (heads = width // 64)")
        if c['intermediate_size'] != 4 * width:
            raise CheckpointError(f"{file}: {tower} has an MLP of {c['intermediate_size']}, not 4 × {width}")
        if c['layer_norm_eps'] != 1e-5: raise CheckpointError(f"{file}: {tower} uses layer_norm_eps {c['layer_norm_eps']}, not 1e-5")
        if c['hidden_act'] not in ('quick_gelu', 'gelu'):
            raise CheckpointError(f"{file}: {tower} uses hidden_act {c['hidden_act']!r}; only quick_gelu and gelu are supported")
        acts.add(c['hidden_act'])
    if len(acts) > 1: raise CheckpointError(f"{file}: the two towers use different activations {sorted(acts)}")
    return acts == {'quick_gelu'}

def _shards(index: Path) -> list[Path]:
    "The shard files named by the `weight_map` of a sharded checkpoint's index, which must exist beside it."
    weight_map = _read_json(index).get('weight_map')
    if not (isinstance(weight_map, dict) and weight_map and all(isinstance(f, str) for f in weight_map.values())):
        raise CheckpointError(f"{index} has no 'weight_map' (tensor name -> shard file); re-save the model with save_pretrained")
    files = [index.parent / f for f in sorted(set(weight_map.values()))]
    if missing := [f.name for f in files if not f.is_file()]:
        raise CheckpointError(f"{index}: weight_map names shards missing from {index.parent}: {missing[:3]}")
    return files

def read_hf_directory(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], bool]:
    "The OpenAI-layout state dict of a `transformers` CLIPModel directory and whether it uses QuickGELU."
    path = Path(path)
    if not (path / 'config.json').is_file():
        raise CheckpointError(f"{path} is a directory without config.json; expected one written by save_pretrained")
    quick_gelu = _hf_quick_gelu(_read_json(path / 'config.json'), path / 'config.json')
    for weights, index in (('model.safetensors', 'model.safetensors.index.json'),
                           ('pytorch_model.bin', 'pytorch_model.bin.index.json')):
        files = [path / weights] if (path / weights).is_file() else []
        if not files and (path / index).is_file(): files = _shards(path / index)   # a sharded checkpoint
        if files:
            read = read_safetensors if weights.endswith('.safetensors') else _torch_load
            sd = {k: v for f in files for k, v in _unwrap(read(f), f).items()}
            src = files[0] if len(files) == 1 else path / index
            try: return hf_to_openai(sd), quick_gelu
            except CheckpointError as e: raise CheckpointError(f"{src}: {e}") from None
            except RuntimeError as e: raise CheckpointError(f"{src}: a tensor has the wrong shape for its name ({e})") from None
    raise CheckpointError(f"{path} has config.json but no model.safetensors or pytorch_model.bin")


# %% [markdown]
# ## open_clip directories
#
# open_clip keeps a model in a folder too, on the Hub and on disk (`open_clip.create_model('local-dir:'
# + folder)` reads one): `open_clip_config.json`, whose `model_cfg` describes the architecture
# (`embed_dim`, `quick_gelu`, a `vision_cfg` and a `text_cfg`), beside the weights,
# `open_clip_model.safetensors` or `open_clip_pytorch_model.bin`. For open_clip's standard `CLIP` class
# the weights already carry OpenAI's names, so nothing is renamed. What the configuration adds is what
# a state dict cannot say: the activation (`quick_gelu`, which open_clip defaults to **False**, the exact
# GELU), the head size, and options our `CLIP` does not have (layer scale, attentional pooling, a text
# tower from `transformers`, …). `read_open_clip_directory` honours the first, checks the second, and
# refuses a non-default value of any of the others by name.

# %%
#| exports
OPEN_CLIP_WEIGHTS = ('open_clip_model.safetensors', 'open_clip_pytorch_model.safetensors', 'open_clip_pytorch_model.bin',
                     'open_clip_pytorch_model.pth', 'model.safetensors', 'pytorch_model.bin')  # open_clip's order of preference
_OPEN_CLIP_FIXED = {  # options our CLIP cannot change: the values it has (open_clip's defaults)
    'vision_cfg': dict(head_width=(64,), mlp_ratio=(4, 4.0), ls_init_value=(None,), attentional_pool=(False,),
                       no_ln_pre=(False,), pos_embed_type=('learnable',), final_ln_after_pool=(False,),
                       pool_type=('tok',), act_kwargs=(None, {}), norm_kwargs=(None, {}), block_type=(None, 'default'),
                       qk_norm=(False,), scaled_cosine_attn=(False,), scale_heads=(False,), scale_attn_inner=(False,),
                       scale_attn=(False,), scale_fc=(False,), timm_model_name=(None, '')),
    'text_cfg': dict(mlp_ratio=(4, 4.0), ls_init_value=(None,), embed_cls=(False,), no_causal_mask=(False,),
                     final_ln_after_pool=(False,), pool_type=('argmax',), proj_bias=(False,), proj_type=('linear',),
                     act_kwargs=(None, {}), norm_kwargs=(None, {}), block_type=(None, 'default'), qk_norm=(False,),
                     scaled_cosine_attn=(False,), scale_heads=(False,), scale_attn_inner=(False,), scale_attn=(False,),
                     scale_fc=(False,), hf_model_name=(None, ''))}

def _open_clip_quick_gelu(cfg: dict, path) -> bool:
    "Check an open_clip model_cfg against what our CLIP can hold; True if it uses QuickGELU."
    if not all(isinstance(cfg.get(k), dict) for k in ('vision_cfg', 'text_cfg')):
        raise CheckpointError(f"{path}: open_clip_config.json has no model_cfg with vision_cfg and text_cfg")
    if cfg.get('custom_text') or cfg.get('multimodal_cfg') or cfg.get('init_logit_bias') is not None:
        raise CheckpointError(f"{path}: not open_clip's standard CLIP (custom_text, multimodal_cfg or init_logit_bias set)")
    for tower, fixed in _OPEN_CLIP_FIXED.items():
        for key, allowed in fixed.items():
            if cfg[tower].get(key, allowed[0]) not in allowed:
                raise CheckpointError(f"{path}: {tower}.{key} = {cfg[tower][key]!r}; our CLIP supports only {allowed[0]!r}")
    text = cfg['text_cfg']
    if text.get('width', 512) != 64 * text.get('heads', 8):
        raise CheckpointError(f"{path}: text_cfg has {text.get('heads', 8)} heads for width {text.get('width', 512)}; "
                              f"our CLIP, like OpenAI's, uses heads of size 64 (heads = width // 64)")
    return bool(cfg.get('quick_gelu', False))

def read_open_clip_directory(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], bool]:
    "The state dict of an open_clip model folder (open_clip_config.json + weights) and whether it uses QuickGELU."
    path = Path(path)
    config = _read_json(path / 'open_clip_config.json')
    if not isinstance(cfg := config.get('model_cfg'), dict):
        raise CheckpointError(f"{path} has no readable open_clip_config.json with a 'model_cfg' object (its keys: "
                              f"{list(config)[:6]}); expected open_clip's model configuration (embed_dim, vision_cfg, text_cfg)")
    quick_gelu = _open_clip_quick_gelu(cfg, path)
    weights = next((path / f for f in OPEN_CLIP_WEIGHTS if (path / f).is_file()), None)
    if weights is None: raise CheckpointError(f"{path} has open_clip_config.json but none of {', '.join(OPEN_CLIP_WEIGHTS)}")
    sd = read_checkpoint(weights)
    got, vision, text = _checked_config(sd, weights), cfg['vision_cfg'], cfg['text_cfg']
    stated = dict(embed_dim=cfg.get('embed_dim'), image_resolution=vision.get('image_size'), context_length=text.get('context_length'))
    for field, value in stated.items():
        if value is not None and value != getattr(got, field):
            raise CheckpointError(f"{path}: open_clip_config.json says {field} {value}, the weights in {weights.name} "
                                  f"have {getattr(got, field)}")
    return sd, quick_gelu


# %% [markdown]
# A folder written by hand, the way open_clip lays one out, reads back to MiniCLIP's weights with the
# activation the configuration names; a configuration with layer scale is refused, by name. (The export
# section at the end writes such folders, and `tests/test_export.py` has open_clip itself read them.)

# %%
oc_dir = scratch / 'oc'; oc_dir.mkdir()
oc_cfg = {'model_cfg': {'embed_dim': 128, 'quick_gelu': False,
                        'vision_cfg': {'image_size': 48, 'layers': 4, 'width': 128, 'patch_size': 8},
                        'text_cfg': {'context_length': 32, 'vocab_size': 49408, 'width': 128, 'heads': 2, 'layers': 4}}}
(oc_dir / 'open_clip_config.json').write_text(json.dumps(oc_cfg))
save_file(mini.state_dict(), oc_dir / 'open_clip_model.safetensors')
sd, quick_gelu = read_open_clip_directory(oc_dir)
assert quick_gelu is False and all(torch.equal(sd[k], v) for k, v in mini.state_dict().items())
oc_cfg['model_cfg']['vision_cfg']['ls_init_value'] = 1e-5
(oc_dir / 'open_clip_config.json').write_text(json.dumps(oc_cfg))
test_fail(lambda: read_open_clip_directory(oc_dir), contains='vision_cfg.ls_init_value = 1e-05')
shutil.rmtree(oc_dir)

# %% [markdown]
# ## The trap: QuickGELU or GELU?
#
# The model chapter noted that OpenAI's models compute $x\,\sigma(1.702x)$, not the exact GELU. A state
# dict cannot tell the two apart: the activation has no parameters. open_clip's own LAION models were
# mostly trained with the exact GELU, OpenAI's with QuickGELU, and the two checkpoints look
# identical to a loader. Evaluated with the wrong activation, a model still runs and still gives
# plausible numbers, only worse ones. How different are the features? Here are the same (random)
# ViT-B/32 weights with both activations:

# %%
quick = create_model('ViT-B/32', quick_gelu=True).eval()              # random weights
exact = copy.deepcopy(quick)                                           # the same weights ...
for block in [*exact.visual.transformer.resblocks, *exact.transformer.resblocks]:
    block.mlp.gelu = torch.nn.GELU()                                   # ... with the exact GELU
x = torch.randn(2, 3, 224, 224)
t = tokenize(['a photo of a temple', 'a photo of a flower', 'a diagram', 'a dog'])
pre_act = []                                       # what the activation sees: the outputs of every c_fc
hooks = [b.mlp.c_fc.register_forward_hook(lambda m, i, o: pre_act.append(o.std().item()))
         for b in [*quick.visual.transformer.resblocks, *quick.transformer.resblocks]]
with torch.no_grad():
    cos_img = F.cosine_similarity(quick.encode_image(x), exact.encode_image(x)).min().item()
    cos_txt = F.cosine_similarity(quick.encode_text(t), exact.encode_text(t)).min().item()
    p_q, p_e = (m(x, t)[0].softmax(-1) for m in (quick, exact))
for h in hooks: h.remove()
gap = (p_q - p_e).abs().max().item()
z = torch.linspace(-6, 6, 1001)
act_gap = (z * torch.sigmoid(1.702 * z) - F.gelu(z)).abs().max().item()
print(f"same weights, QuickGELU vs GELU: cosine of image features >= {cos_img:.5f}, "
      f"of text features >= {cos_txt:.5f}; zero-shot probabilities move by up to {gap:.4f}")
print(f"the activations' inputs have a standard deviation of {min(pre_act):.2f} to {max(pre_act):.2f}; "
      f"the two functions differ by at most {act_gap:.3f}")
del exact

# %% [markdown]
# With random weights the inputs of the activation stay small (standard deviations printed above), in
# the range where the two functions nearly agree, so these numbers understate the trap: trained
# weights produce larger pre-activations through 12 to 24 layers, and the differences compound. The `#| slow` cell at the end
# of the chapter repeats the measurement with OpenAI's weights when they are available. `load`
# therefore decides the activation from what is known about the source, and lets the caller overrule:
#
# | source | `quick_gelu` when not given |
# |---|---|
# | a released name, a TorchScript archive | `True` (OpenAI's models) |
# | a Hugging Face directory | from `hidden_act` in `config.json` |
# | an open_clip directory | from `quick_gelu` in `open_clip_config.json` (absent: `False`, open_clip's default) |
# | a checkpoint with a top-level `'quick_gelu'` (the training chapter's) | that value |
# | a plain state dict (`torch.save`, `.safetensors`, open_clip) | `True`, unless told: pass `quick_gelu=False` for open_clip models trained with GELU (those without `-quickgelu` in their name) |

# %% [markdown]
# ## Preprocessing
#
# > "A random square crop from resized images is the only data augmentation used during training."
# > (Radford et al. 2021, §2.3)
#
# At inference time the crop is the centre one. OpenAI's transform, which every number reported for the
# released models went through, is: resize the **short side** to `n_px` with **bicubic** interpolation
# (the long side scaled in proportion and rounded down), crop the centre `n_px × n_px` square (offsets
# rounded half to even, as Python's `round` does), convert to RGB, scale to [0, 1], and normalise each
# channel with the mean and standard deviation of OpenAI's training images. To give the released
# models the inputs they were measured on, we reproduce it pixel for pixel, with PIL directly. The last
# step is `normalize` (`unnormalize` undoes it, to show a picture). Later chapters take these two,
# `OPENAI_MEAN` and `OPENAI_STD`, and the mode fixes below (`fix_mode`, `to_rgb`) from here.
#
# Two refinements, neither of which changes an ordinary picture:
#
# - **Image modes.** Resizing happens in the picture's own mode, then the conversion to RGB, in that
#   order (as in OpenAI's code), so palette images are resized by nearest neighbour and transparent
#   pixels lose their alpha. PIL clips 16-bit grey images (`I;16…`) at 255, which turns almost every
#   real 16-bit picture white; we first map their 0…65535 range onto 0…255. PIL cannot convert
#   premultiplied `La` to RGB at all; we un-premultiply it to `LA` first.
# - **Extreme shapes.** A $10000 \times 3$ strip, resized so that its short side is 224, becomes 746,666
#   pixels wide. Above 2²⁶ resized pixels we resize only the window that survives the crop (PIL's `box`
#   argument), which is close to the full resize but not bit-identical.
#
# <!-- fixed: 746,666 -->

# %%
#| exports
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)   # per-channel statistics of OpenAI's training images
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)   # (source: clip/clip.py, _transform)
MAX_RESIZED_PIXELS = 1 << 26

def _resized_size(w: int, h: int, n: int) -> tuple[int, int]:
    "Short side to n, long side scaled and rounded down: (width, height)."
    return (n, int(n * h / w)) if w <= h else (int(n * w / h), n)

def fix_mode(image: Image.Image) -> Image.Image:
    "16-bit grey mapped onto 8 bits ('L'); premultiplied 'La' un-premultiplied to 'LA'; other modes unchanged."
    if image.mode.startswith('I;16'):
        a = np.asarray(image).astype(np.uint32)
        return Image.fromarray(((a + 128) // 257).astype(np.uint8))      # 0…65535 -> 0…255, rounded
    if image.mode == 'La': return image.convert('LA')
    return image

def to_rgb(image: Image.Image) -> Image.Image:
    "The picture in RGB, through RGBA for the modes PIL cannot convert to RGB directly."
    try: return image.convert('RGB')
    except ValueError: return image.convert('RGBA').convert('RGB')     # modes without a direct route to RGB

def _per_channel(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=like.device).view(3, 1, 1)

def normalize(x: torch.Tensor, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    "Pictures [3, H, W] (or [B, 3, H, W]), floats in [0, 1], normalised per channel (default: OpenAI's mean and std)."
    return (x - _per_channel(mean, x)) / _per_channel(std, x)

def unnormalize(x: torch.Tensor, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    "The inverse of `normalize`: normalised pictures back to floats in [0, 1] (clamped)."
    return (x * _per_channel(std, x) + _per_channel(mean, x)).clamp(0, 1)


# %%
#| exports
class ImageTransform:
    "OpenAI's inference transform: bicubic resize of the short side to n_px, centre crop, RGB, normalise."
    def __init__(self, n_px: int, mean=OPENAI_MEAN, std=OPENAI_STD):
        self.n_px, self.mean, self.std = n_px, tuple(mean), tuple(std)

    def __call__(self, image: Image.Image) -> torch.Tensor:                # PIL image -> [3, n_px, n_px]
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image (Image.open(path) or Image.fromarray(array)), got {type(image).__name__}")
        (w, h), n = image.size, self.n_px
        if w == 0 or h == 0: raise ValueError(f"cannot preprocess an empty image of size {w}×{h}")
        image = fix_mode(image)
        nw, nh = _resized_size(w, h, n)
        left, top = int(round((nw - n) / 2.0)), int(round((nh - n) / 2.0))
        if nw * nh <= MAX_RESIZED_PIXELS:
            if (nw, nh) != (w, h): image = image.resize((nw, nh), Image.Resampling.BICUBIC)
            image = image.crop((left, top, left + n, top + n))
        else:                                                               # resize only the window we keep
            sx, sy = w / nw, h / nh
            image = image.resize((n, n), Image.Resampling.BICUBIC,
                                 box=(left * sx, top * sy, (left + n) * sx, (top + n) * sy))
        x = torch.from_numpy(np.array(to_rgb(image), dtype=np.uint8))     # [n, n, 3]
        x = x.permute(2, 0, 1).float().div(255)                            # [3, n, n] in [0, 1]
        return normalize(x, self.mean, self.std)

    def __repr__(self): return f"ImageTransform(n_px={self.n_px}: bicubic short side, centre crop, RGB, normalise)"

def image_transform(n_px: int) -> ImageTransform:
    "The preprocessing for a model of input resolution `n_px` (what `load` returns as `preprocess`)."
    return ImageTransform(n_px)


# %% [markdown]
# Checks of the idea. A one-pixel image is a constant colour, and bicubic resizing of a constant is
# the same constant, so every output pixel is that colour, normalised. Any size and any mode gives a
# `[3, n, n]` float tensor. A 16-bit ramp gives the same as its 8-bit version, where PIL's own conversion
# makes it white.

# %%
pre = image_transform(224)
out = pre(Image.new('RGB', (1, 1), (200, 100, 50)))
expected = (torch.tensor([200, 100, 50]) / 255 - torch.tensor(OPENAI_MEAN)) / torch.tensor(OPENAI_STD)
test_close(out, expected.view(3, 1, 1).expand(3, 224, 224), eps=1e-6)

rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8))
small = image_transform(64)
for size in [(1, 1), (1000, 3), (3, 1000), (225, 223), (640, 480)]:
    for mode in ['1', 'L', 'LA', 'La', 'P', 'PA', 'RGBA', 'CMYK', 'YCbCr', 'HSV', 'I', 'I;16', 'F']:
        y = small(rgb.resize(size).convert(mode))
        assert y.shape == (3, 64, 64) and y.dtype == torch.float32 and y.isfinite().all(), (size, mode)

ramp8 = np.tile(np.arange(256, dtype=np.uint8), (64, 1))                  # [64, 256] grey ramp
ramp16 = Image.fromarray(ramp8.astype(np.uint16) * 257)                   # the same ramp, 16 bits ('I;16')
test_eq(ramp16.mode, 'I;16')
assert torch.equal(pre(ramp16), pre(Image.fromarray(ramp8)))
print(f"PIL's own 16-bit conversion: {np.asarray(ramp16.convert('L')).mean():.0f} mean grey level "
      f"(white); ours: {np.asarray(fix_mode(ramp16)).mean():.1f}, the ramp's {ramp8.mean():.1f}")

# %% [markdown]
# Faithfulness is checked in `tests/test_pretrained.py`: on random pictures of sizes 1×1, 3×1000,
# 1000×3, 225×223 and 640×480, in every PIL mode, our tensor is *equal* (maximum difference 0) to
# open_clip's OpenAI transform wherever open_clip accepts the mode and PIL's conversion is not the
# 16-bit clipping above.

# %% [markdown]
# ## `load`
#
# Precision follows OpenAI's `clip.load`: on a CPU the model is float32; on a GPU it keeps the
# checkpoint's precision, which for the released models is OpenAI's float16 layout (convolutions,
# linear layers and projections in float16, norms and embeddings in float32). `dtype=` chooses
# explicitly: `torch.float32`, `torch.float16` (OpenAI's layout) or `torch.bfloat16`, which casts every
# tensor (bfloat16 has float32's range, so the norms need no protection; they still compute in
# float32).
#
# `load` reads a released name, a checkpoint file, a training run's folder (its `checkpoint.pt`), a
# Hugging Face folder (`config.json`) and an open_clip folder (`open_clip_config.json`); a folder with
# both configurations, as some Hub repositories have, is read as Hugging Face's.
#
# `jit=True` is the one explicit opt-in to TorchScript: it returns `torch.jit.load` of the archive, so
# the archive's code runs. That code is TorchScript, not arbitrary Python, but it is still code from
# the file, and a traced graph has its input-dependent decisions frozen in (our `encode_text` stops at
# the last [EOS] of the batch it was traced on; OpenAI's graphs hold the device they were traced on,
# which `clip.load` rewrites and we do not). Use it only for archives you trust, for a deployment that
# needs TorchScript. Even then `load` first reads the archive with the safe reader, to learn the
# image resolution, so a payload is refused before TorchScript sees the file.

# %%
#| exports
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

def _place(model: CLIP, device: torch.device, dtype: torch.dtype | None) -> CLIP:
    "Move to `device` in `dtype`: float32, float16 in OpenAI's layout, or bfloat16 throughout; default float32 on CPU, as stored on GPU."
    if dtype is None: dtype = torch.float32 if device.type == 'cpu' else model.dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be torch.float32, torch.float16 (OpenAI's layout) or torch.bfloat16, not {dtype}")
    model.float()
    if dtype == torch.float16: convert_weights(model)
    if dtype == torch.bfloat16: model.bfloat16()
    return model.to(device)

def _resolve(name_or_path: str | os.PathLike, download_root=None) -> Path:
    "The file or folder behind a released name (downloaded once), a path, or a training run's folder."
    source = str(name_or_path)
    if source in MODEL_URLS: return Path(download(MODEL_URLS[source], download_root))
    if not (os.path.isdir(source) or os.path.isfile(source)):
        raise FileNotFoundError(f"{source!r} is neither a released model ({', '.join(MODEL_URLS)}) "
                                f"nor an existing file or directory")
    path = Path(source)
    if path.is_dir() and not any((path / f).is_file() for f in ('config.json', 'open_clip_config.json')):
        if not (path / 'checkpoint.pt').is_file():
            raise CheckpointError(f"{path} is a directory without config.json (Hugging Face), open_clip_config.json "
                                  f"(open_clip) or checkpoint.pt (a training run of this book)")
        path = path / 'checkpoint.pt'                                    # a run folder written by the training chapter
    return path

def _read_source(path: Path) -> tuple[dict[str, torch.Tensor], bool, str]:
    "(OpenAI-layout state dict, QuickGELU unless told otherwise, format) of a resolved file or folder, its shapes checked."
    if path.is_dir() and (path / 'config.json').is_file(): (sd, quick), fmt = read_hf_directory(path), 'huggingface'
    elif path.is_dir(): (sd, quick), fmt = read_open_clip_directory(path), 'open_clip'
    else:
        (sd, stored), fmt = _read_file(path), checkpoint_format(path)
        quick = True if stored is None else stored
    _checked_config(sd, path)
    return sd, quick, fmt

def load(name_or_path: str | os.PathLike, device: str | torch.device | None = None, jit: bool = False,
         download_root: str | os.PathLike | None = None, quick_gelu: bool | None = None,
         dtype: torch.dtype | None = None):
    "(model, preprocess) for a released model name, a checkpoint file, a training run's folder, or a Hugging Face or open_clip CLIP folder."
    device, path = get_device(device), _resolve(name_or_path, download_root)
    if dtype is not None and dtype not in _DTYPES:                       # refuse before reading any weights
        raise ValueError(f"dtype must be torch.float32, torch.float16 (OpenAI's layout) or torch.bfloat16, not {dtype}")
    sd, default_quick, fmt = _read_source(path)
    if jit and fmt != 'torchscript':
        warnings.warn(f"{path} is not a TorchScript archive ({fmt}); loading it as a state dict instead"); jit = False
    if jit:
        n_px = config_from_state_dict(sd).image_resolution               # checked by _read_source
        model = torch.jit.load(str(path), map_location=device).eval()     # runs the archive's TorchScript code
        if device.type == 'cpu' or dtype == torch.float32: model.float()
        return model, image_transform(n_px)
    try: model = build_model(sd, quick_gelu=default_quick if quick_gelu is None else quick_gelu)
    except (KeyError, RuntimeError, ValueError, IndexError, TypeError, ArithmeticError) as e:
        raise CheckpointError(f"{path} is not a CLIP checkpoint in OpenAI's layout: {e}") from None
    model = _place(model, device, dtype)
    return model, image_transform(model.visual.input_resolution)


# %% [markdown]
# `load` on our MiniCLIP files (the TorchScript archive, the DDP training checkpoint, the
# state dict in HF-free safetensors form, and a training run's folder) gives the same model each time, without TorchScript being
# loaded; with `jit=True` it hands back the archive's own TorchScript module, which agrees too.

# %%
save_file(mini.state_dict(), scratch / 'mini.safetensors')
with torch.no_grad(): ref_img, ref_txt = mini.encode_image(images), mini.encode_text(texts)
with mock.patch('torch.jit.load', side_effect=AssertionError('TorchScript must not be loaded')):
    for f in ('MiniCLIP.pt', 'train.pt', 'mini.safetensors', 'run'):     # 'run': the folder, its checkpoint.pt
        model, preprocess = load(scratch / f, device='cpu')
        with torch.no_grad():
            test_close(model.encode_image(images), ref_img, eps=1e-6)
            test_close(model.encode_text(texts), ref_txt, eps=1e-6)
with warnings.catch_warnings():
    warnings.simplefilter('ignore', FutureWarning)                       # torch.jit's deprecation notice
    jitted, preprocess = load(scratch / 'MiniCLIP.pt', device='cpu', jit=True)
assert isinstance(jitted, torch.jit.ScriptModule)
with torch.no_grad(): test_close(jitted.encode_image(images), ref_img, eps=1e-5)
test_eq(preprocess.n_px, 48)
print(type(jitted).__name__, preprocess)

# %% [markdown]
# What `load` refuses, it refuses by name: the payload files, a name that is neither released nor on
# disk, and a state dict that is not a CLIP.

# %%
test_fail(lambda: load(scratch / 'payload.pt', device='cpu'), contains='payload.pt')
test_fail(lambda: load(scratch / 'payload-archive.pt', device='cpu', jit=True), contains='asks for io.open')
test_fail(lambda: load('ViT-B/31', device='cpu'), contains='neither a released model')
torch.save({'fc.weight': torch.zeros(2, 2)}, scratch / 'not-clip.pt')
test_fail(lambda: load(scratch / 'not-clip.pt', device='cpu'), contains='not a CLIP checkpoint')
test_fail(lambda: load(scratch / 'mini.safetensors', device='cpu', dtype=torch.int8), contains='torch.bfloat16')
assert not marker.exists()

# %% [markdown]
# `dtype=torch.bfloat16` casts every tensor, and both encoders run in it on a CPU, close to the float32
# features; and a checkpoint that records `'quick_gelu': False` comes back with the exact GELU unless
# the caller says otherwise.

# %%
bf, _ = load(scratch / 'mini.safetensors', device='cpu', dtype=torch.bfloat16)
assert all(t.dtype == torch.bfloat16 for t in bf.state_dict().values())
with torch.no_grad(): img_bf, txt_bf = bf.encode_image(images), bf.encode_text(texts)
test_eq((img_bf.dtype, txt_bf.dtype), (torch.bfloat16, torch.bfloat16))
cos_bf = min(F.cosine_similarity(img_bf.float(), ref_img).min(), F.cosine_similarity(txt_bf.float(), ref_txt).min()).item()
assert cos_bf > 0.99
print(f"bfloat16 against float32 features: cosine >= {cos_bf:.4f}")
torch.save({'model': mini.state_dict(), 'quick_gelu': False}, scratch / 'gelu.pt')
test_eq(uses_quick_gelu(load(scratch / 'gelu.pt', device='cpu')[0]), False)
test_eq(uses_quick_gelu(load(scratch / 'gelu.pt', device='cpu', quick_gelu=True)[0]), True)   # the caller decides

# %% [markdown]
# ## Which caption fits this picture?
#
# > "For each dataset, we use the names of all the classes in the dataset as the set of potential text
# > pairings and predict the most probable (image, text) pair according to CLIP." (Radford et al. 2021,
# > §3.1.2)
#
# Everything is in place for an example in the spirit of OpenAI's README: two pictures shipped with scikit-learn (a
# Chinese temple and a flower), four captions, and the probabilities over captions for each picture.
# First with **random weights**: the machinery runs, shapes and all, but the probabilities mean
# nothing, because nothing was learned.

# %%
#| fig-cap: "The two scikit-learn sample pictures as stored and as the model sees them after the resize and centre crop to 224×224."
#| fig-alt: "Four photos in a row: a many-tiered Chinese temple by a lake at 640 by 427 pixels, the same temple cut to a square, an orange flower on a dark green background at 640 by 427, and the same flower cut to a square; the square crops lose the left and right edges."
pictures = {name: Image.fromarray(load_sample_image(f'{name}.jpg')) for name in ('china', 'flower')}
captions = ['a photo of a temple', 'a photo of a flower', 'a photo of a dog', 'a diagram']
pre = image_transform(CONFIGS['ViT-B/32'].image_resolution)
batch = torch.stack([pre(im) for im in pictures.values()])               # [2, 3, 224, 224]

fig, axes = plt.subplots(1, 4, figsize=(8, 2.1), dpi=72)
for i, (name, im) in enumerate(pictures.items()):
    axes[2 * i].imshow(im); axes[2 * i].set_title(f'{name}.jpg {im.size[0]}×{im.size[1]}', fontsize=9)
    shown = unnormalize(batch[i])
    axes[2 * i + 1].imshow(shown.permute(1, 2, 0)); axes[2 * i + 1].set_title('what the model sees, 224²', fontsize=9)
for ax in axes: ax.axis('off')
plt.tight_layout(); plt.show()


# %%
def caption_probabilities(model, batch, captions):
    "Softmax over captions of the scaled cosine similarities: [pictures, captions]."
    with torch.no_grad():
        logits_per_image, _ = model(batch, tokenize(captions))
    return logits_per_image.softmax(dim=-1)

probs = caption_probabilities(quick, batch, captions)                   # the random ViT-B/32 from above
test_close(probs.sum(-1), torch.ones(2))
print('random weights (meaningless):')
for name, row in zip(pictures, probs): print(f"  {name:7}", '  '.join(f"{c!r}: {p:.2f}" for c, p in zip(captions, row)))
del quick

# %% [markdown]
# With OpenAI's weights, the temple should go to "a photo of a temple" and the flower to "a photo of a
# flower". The cell below downloads ViT-B/32 (a few hundred megabytes) when it can; where the machine is offline, as
# the one that ran this page may be, it says so and how to get the file. It also repeats the QuickGELU
# measurement on the real weights.

# %%
#| slow
try:
    model, preprocess = load('ViT-B/32', device='cpu')
except DownloadError:                         # offline: say so plainly (the error itself names this machine's paths)
    print("OpenAI's ViT-B/32 weights are not on this machine and could not be downloaded (offline?), so there are no "
          "real probabilities here. Online, this cell downloads them once; offline, copy the file from "
          f"{MODEL_URLS['ViT-B/32']} into the folder $CLIP_ANNOTATED_CACHE names (default ~/.cache/clip_annotated).")
else:
    batch = torch.stack([preprocess(im) for im in pictures.values()])
    probs = caption_probabilities(model, batch, captions)
    for name, row in zip(pictures, probs): print(f"  {name:7}", '  '.join(f"{c!r}: {p:.3f}" for c, p in zip(captions, row)))
    exact, _ = load('ViT-B/32', device='cpu', quick_gelu=False)
    with torch.no_grad():
        cos = F.cosine_similarity(model.encode_image(batch), exact.encode_image(batch)).min().item()
    gap = (probs - caption_probabilities(exact, batch, captions)).abs().max().item()
    print(f"real weights, QuickGELU vs GELU: image-feature cosine >= {cos:.4f}; probabilities move by up to {gap:.3f}")


# %% [markdown]
# ## Tokens of the right length: `get_tokenizer`
#
# > "For computational efficiency, the max sequence length was capped at 76." (Radford et al. 2021, §2.4)
#
# Every released model reads 77 positions, so `tokenize` pads to 77 unless told otherwise. Our
# MiniCLIP reads 32. A caption of 50 tokens then fits `tokenize`'s default and still cannot be encoded
# by MiniCLIP; `encode_text` says so (the model chapter) instead of failing deep inside. The simpler
# habit is to ask the model for its tokenizer: `get_tokenizer` binds `tokenize` to a model's context
# length, whether it is given a model, a configuration name, a released name, or anything `load` reads
# (the length is then the number of rows of `positional_embedding`). open_clip has a function of the
# same name and use.

# %%
#| exports
class Tokenizer:
    "`tokenize` bound to one context length: tok(texts, truncate=False) -> [n, context_length] token ids."
    def __init__(self, context_length: int = 77):
        if context_length < 2: raise ValueError(f"context_length must hold [SOS] and [EOS], got {context_length}")
        self.context_length = context_length

    def __call__(self, texts: str | list[str], truncate: bool = False) -> torch.LongTensor:
        return tokenize(texts, context_length=self.context_length, truncate=truncate)

    def decode(self, tokens) -> str | list[str]:
        "Text of token ids (one row or a batch), as `decode` of the tokenizer chapter."
        return decode(tokens)

    def __repr__(self): return f"Tokenizer(context_length={self.context_length})"

def get_tokenizer(model_or_name) -> Tokenizer:
    "The tokenizer of a model: `tokenize` at its context length (a CLIP, a CONFIGS or released name, or a path `load` reads)."
    if isinstance(model_or_name, torch.nn.Module):
        n = getattr(model_or_name, 'context_length', None)
        if not isinstance(n, int): raise TypeError(f"{type(model_or_name).__name__} has no integer context_length")
        return Tokenizer(n)
    if isinstance(model_or_name, CLIPConfig): return Tokenizer(model_or_name.context_length)
    name = str(model_or_name)
    if name in CONFIGS: return Tokenizer(CONFIGS[name].context_length)
    if os.path.exists(name): return Tokenizer(_read_source(_resolve(name))[0]['positional_embedding'].shape[0])
    raise KeyError(f"{name!r} is neither a configuration ({', '.join(CONFIGS)}) nor an existing file or directory")


# %%
tok32 = get_tokenizer(mini)
print(tok32, tok32(['a red circle']).shape)
test_eq(tok32(['a red circle']), tokenize(['a red circle'], context_length=32))
test_eq([get_tokenizer(n).context_length for n in ('MiniCLIP', 'ViT-B/32')], [32, 77])
test_eq(get_tokenizer(scratch / 'run').context_length, 32)                   # read off the checkpoint
caption = 'a smiling face with heart-shaped eyes and rosy cheeks, ' * 4
n_tokens = int(tokenize(caption).argmax()) + 1
for bad in (lambda: tok32(caption), lambda: mini.encode_text(tokenize(caption))):
    try: bad()
    except ValueError as e: show(e)
test_fail(lambda: tok32(caption), contains=f'is {n_tokens} tokens')
test_fail(lambda: mini.encode_text(tokenize(caption)), contains="use get_tokenizer(model)")
test_eq(tok32(caption, truncate=True)[0, -1], 49407)
test_eq(tok32.decode(tok32('A red circle')), ['a red circle'])


# %% [markdown]
# ## A model and its two transforms: `create_model_and_transforms`
#
# > "A random square crop from resized images is the only data augmentation used during training."
# > (Radford et al. 2021, §2.3)
#
# open_clip hands out a model with two transforms: one for training, with the paper's augmentation,
# and the deterministic one for evaluation (`image_transform` above). The training transform resizes
# the short side to `n_px · z`, with a zoom `z` drawn from `zoom` each time, and crops an `n_px` square
# at a random place. Only the window that is kept is resized (PIL's `box`), so a huge picture costs no
# more than a small one.
#
# The trap is in the random numbers. A transform that owns a NumPy generator is copied into every
# `DataLoader` worker process with the generator's state, so all workers would draw *the same* crops.
# `TrainTransform` therefore starts a fresh stream in each worker, from the worker's seed (which
# PyTorch draws anew for every epoch) together with `seed`, if one was given.

# %%
#| exports
class TrainTransform:
    "The paper's training augmentation: short side resized to n_px·z, z ~ U(zoom), a random n_px square crop, RGB, normalise."
    def __init__(self, n_px: int, zoom: tuple[float, float] = (1.0, 1.2), seed: int | None = None,
                 mean=OPENAI_MEAN, std=OPENAI_STD):
        if not 0 < zoom[0] <= zoom[1]: raise ValueError(f"zoom must be (low, high) with 0 < low <= high, got {zoom}")
        self.n_px, self.zoom, self.seed, self.mean, self.std = n_px, tuple(zoom), seed, tuple(mean), tuple(std)
        self._rng, self._worker_seed = None, None

    def _generator(self) -> np.random.Generator:
        "This process's generator: one stream in the main process, a fresh one per DataLoader worker and epoch."
        info = torch.utils.data.get_worker_info()
        worker_seed = None if info is None else info.seed
        if self._rng is None or worker_seed != self._worker_seed:
            entropy = [s for s in (self.seed, worker_seed) if s is not None]
            self._rng, self._worker_seed = np.random.default_rng(entropy or None), worker_seed
        return self._rng

    def __call__(self, image: Image.Image) -> torch.Tensor:                # PIL image -> [3, n_px, n_px]
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image (Image.open(path) or Image.fromarray(array)), got {type(image).__name__}")
        (w, h), n, rng = image.size, self.n_px, self._generator()
        if w == 0 or h == 0: raise ValueError(f"cannot transform an empty image of size {w}×{h}")
        scale = n * rng.uniform(*self.zoom) / min(w, h)
        nw, nh = max(n, round(w * scale)), max(n, round(h * scale))       # the resized picture, never below n
        left, top = int(rng.integers(0, nw - n + 1)), int(rng.integers(0, nh - n + 1))
        sx, sy = w / nw, h / nh
        image = to_rgb(fix_mode(image)).resize((n, n), Image.Resampling.BICUBIC,
                                               box=(left * sx, top * sy, (left + n) * sx, (top + n) * sy))
        x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(255)   # [3, n, n]
        return normalize(x, self.mean, self.std)

    def __repr__(self): return f"TrainTransform(n_px={self.n_px}, zoom={self.zoom}: random square crop, RGB, normalise)"


# %% [markdown]
# Checks: the output has the eval transform's shape; two calls crop differently; the same seed gives
# the same crops; and with no zoom, a picture that is already `n_px` square is kept whole, which is
# exactly what the eval transform makes of it.

# %%
china = pictures['china']                                                # 640 × 427, from the example above
aug = TrainTransform(224, seed=0)
a, b = aug(china), aug(china)
test_eq(a.shape, (3, 224, 224)); assert not torch.equal(a, b)
test_eq(TrainTransform(224, seed=0)(china), a)
square = china.resize((48, 48))
test_close(TrainTransform(48, zoom=(1, 1))(square), image_transform(48)(square), eps=1e-6)
print(aug)


# %%
#| exports
def create_model_and_transforms(name: str | None, pretrained: str | os.PathLike | None = None, device=None,
                                quick_gelu: bool | None = None) -> tuple[CLIP, TrainTransform, ImageTransform]:
    "(model, train_transform, eval_transform) as in open_clip: `CONFIGS[name]` randomly initialised, or `pretrained` loaded."
    if pretrained is None:
        if name is None: raise ValueError("give a configuration name, pretrained weights, or both")
        model = create_model(name, quick_gelu=True if quick_gelu is None else quick_gelu).to(get_device(device))
    else:
        if str(pretrained) == 'openai' and name in MODEL_URLS: pretrained = name   # open_clip's tag for OpenAI's weights
        model, _ = load(pretrained, device=device, quick_gelu=quick_gelu)
        if name is not None:
            if name not in CONFIGS: raise KeyError(f"unknown configuration {name!r}; choose one of {list(CONFIGS)} or None")
            got, want = asdict(config_from_state_dict(model.state_dict())), asdict(CONFIGS[name])
            if diff := [f"{k} {got[k]} (not {want[k]})" for k in want if got[k] != want[k]]:
                warnings.warn(f"{pretrained} is not a {name}: it has {', '.join(diff)}; the model follows the checkpoint")
    n_px = model.visual.input_resolution
    return model, TrainTransform(n_px), image_transform(n_px)


# %% [markdown]
# A name alone gives a random model, ready to train (in training mode); with `pretrained`, the weights
# and the architecture come from the checkpoint (in evaluation mode, as from `load`), and a name that
# disagrees with them is reported:

# %%
model, train_tf, eval_tf = create_model_and_transforms('MiniCLIP', device='cpu')
test_eq((type(model).__name__, model.training, train_tf.n_px, eval_tf.n_px), ('CLIP', True, 48, 48))
model, train_tf, eval_tf = create_model_and_transforms('MiniCLIP', pretrained=scratch / 'run', device='cpu')
assert all(torch.equal(model.state_dict()[k], v) for k, v in mini.state_dict().items()) and not model.training
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    create_model_and_transforms('MiniCLIP-RN', pretrained=scratch / 'run', device='cpu')
assert 'the model follows the checkpoint' in str(caught[0].message)


# %% [markdown]
# ## Export to the ecosystem: `export_model`
#
# The reverse of everything above: a model trained here, or any source `load` reads, written as a
# folder that Hugging Face `transformers` or open_clip load with their own code.
#
# - **`format='hf'`** writes `config.json` (a `CLIPConfig`: sizes, heads, layers, the MLP at 4× the width,
#   `max_position_embeddings` = the context length, `hidden_act` `'quick_gelu'` or `'gelu'` as the
#   model computes), `model.safetensors` (the names through `openai_to_hf`), and the tokenizer and image
#   preprocessing files, so that `transformers.CLIPModel.from_pretrained(folder)` and
#   `transformers.CLIPProcessor.from_pretrained(folder)` work. One setting needs care: HF's text
#   tower pools at the first occurrence of `eos_token_id`, and at `argmax(input_ids)` only for the old
#   value 2. With `eos_token_id` = 49407, the largest id, the first [EOS] *is* the argmax of any row of
#   our `tokenize`, so both rules pick the same position. (HF's tokenizer pads with [EOS] rather than
#   zeros; the first [EOS] is still the one that counts. Built from our vocabulary and merges, it gives
#   our ids on ordinary text, but it does not run ftfy, so mojibake and HTML entities can come out
#   differently.) `transformers` has no ResNet CLIP, so a ResNet is refused with `format='hf'`.
# - **`format='open_clip'`** writes `open_clip_config.json` (a `model_cfg` with `embed_dim`,
#   `quick_gelu`, `vision_cfg` and `text_cfg`, and OpenAI's preprocessing) and
#   `open_clip_model.safetensors` with the state dict as it is: open_clip's `CLIP` uses OpenAI's names.
#   ViT and ResNet models both export. open_clip reads the folder with
#   `open_clip.create_model_and_transforms('local-dir:' + str(folder))`, and
#   `open_clip.get_tokenizer('local-dir:' + str(folder))` gives its tokenizer at the right context length.
#
# Weights keep the dtype the model holds; a source is loaded on the CPU in float32 first. The
# activation travels with the folder, so `load(folder)` gives back the same model.
# <!-- fixed: 4× -->

# %%
#| exports
def _heads(transformer: torch.nn.Module, width: int) -> int:
    "The number of attention heads of a Transformer (width // 64 when it has no layers)."
    return transformer.resblocks[0].attn.heads if len(transformer.resblocks) else max(1, width // 64)

def _as_clip(model_or_source) -> tuple[CLIP, str]:
    "The CLIP to export (unwrapped from DistributedDataParallel or torch.compile, or loaded) and its name for messages."
    if not isinstance(model_or_source, torch.nn.Module): return load(model_or_source, device='cpu')[0], repr(str(model_or_source))
    model = model_or_source
    while (inner := next((getattr(model, a) for a in ('module', '_orig_mod')
                          if isinstance(getattr(model, a, None), torch.nn.Module)), None)) is not None: model = inner
    if not isinstance(model, CLIP): raise TypeError(f"export_model needs a CLIP or a source load() reads, got a {type(model).__name__}")
    cfg = config_from_state_dict(model.state_dict())
    return model, next((repr(n) for n, c in CONFIGS.items() if c == cfg), f"this CLIP ({cfg})")

def _hf_files(model: CLIP, cfg: CLIPConfig, quick_gelu: bool) -> dict[str, dict]:
    "config.json (a transformers CLIPConfig), preprocessor_config.json and, for OpenAI's vocabulary, tokenizer_config.json."
    act, openai_vocab = 'quick_gelu' if quick_gelu else 'gelu', cfg.vocab_size == default_tokenizer().vocab_size
    ids = dict(bos_token_id=49406, eos_token_id=49407, pad_token_id=49407) if openai_vocab else dict(eos_token_id=2)  # 2: HF's argmax pooling
    text = dict(model_type='clip_text_model', vocab_size=cfg.vocab_size, hidden_size=cfg.transformer_width,
                intermediate_size=4 * cfg.transformer_width, num_attention_heads=cfg.transformer_heads,
                num_hidden_layers=cfg.transformer_layers, max_position_embeddings=cfg.context_length,
                projection_dim=cfg.embed_dim, hidden_act=act, layer_norm_eps=1e-5, **ids)
    vision = dict(model_type='clip_vision_model', hidden_size=cfg.vision_width, intermediate_size=4 * cfg.vision_width,
                  num_attention_heads=_heads(model.visual.transformer, cfg.vision_width), num_hidden_layers=cfg.vision_layers,
                  image_size=cfg.image_resolution, patch_size=cfg.vision_patch_size, num_channels=3,
                  projection_dim=cfg.embed_dim, hidden_act=act, layer_norm_eps=1e-5)
    n = cfg.image_resolution
    files = {'config.json': dict(architectures=['CLIPModel'], model_type='clip', projection_dim=cfg.embed_dim,
                                 logit_scale_init_value=float(model.logit_scale.detach()), text_config=text, vision_config=vision),
             'preprocessor_config.json': dict(image_processor_type='CLIPImageProcessor', do_convert_rgb=True, do_resize=True,
                                              size={'shortest_edge': n}, resample=3, do_center_crop=True,   # 3: bicubic
                                              crop_size={'height': n, 'width': n}, do_rescale=True, rescale_factor=1 / 255,
                                              do_normalize=True, image_mean=list(OPENAI_MEAN), image_std=list(OPENAI_STD))}
    if openai_vocab:
        files['tokenizer_config.json'] = dict(tokenizer_class='CLIPTokenizer', model_max_length=cfg.context_length,
                                              bos_token=SOT, eos_token=EOT, unk_token=EOT, pad_token=EOT)
    return files

def _open_clip_files(model: CLIP, cfg: CLIPConfig, quick_gelu: bool) -> dict[str, dict]:
    "open_clip_config.json: open_clip's model_cfg for this architecture and activation, and OpenAI's preprocessing."
    vit = isinstance(cfg.vision_layers, int)
    vision = dict(image_size=cfg.image_resolution, layers=cfg.vision_layers if vit else list(cfg.vision_layers),
                  width=cfg.vision_width, patch_size=cfg.vision_patch_size,
                  head_width=cfg.vision_width // _heads(model.visual.transformer, cfg.vision_width) if vit else 64)
    text = dict(context_length=cfg.context_length, vocab_size=cfg.vocab_size, width=cfg.transformer_width,
                heads=cfg.transformer_heads, layers=cfg.transformer_layers)
    return {'open_clip_config.json': dict(
        model_cfg=dict(embed_dim=cfg.embed_dim, quick_gelu=quick_gelu, vision_cfg=vision, text_cfg=text),
        preprocess_cfg=dict(mean=list(OPENAI_MEAN), std=list(OPENAI_STD), interpolation='bicubic', resize_mode='shortest'))}


# %%
#| exports
def export_model(model_or_source, out: str | os.PathLike, format: str = 'hf') -> Path:
    """Write a CLIP (or anything `load` reads) as a folder for Hugging Face (format='hf') or open_clip; returns the folder.

    format='hf' (ViT only):  transformers.CLIPModel.from_pretrained(out); transformers.CLIPProcessor.from_pretrained(out)
    format='open_clip':      open_clip.create_model_and_transforms('local-dir:' + str(out)); open_clip.get_tokenizer('local-dir:' + str(out))
    Both:                    clip_annotated.load(out)
    """
    if format not in ('hf', 'open_clip'): raise ValueError(f"format must be 'hf' or 'open_clip', got {format!r}")
    model, name = _as_clip(model_or_source)
    quick_gelu = uses_quick_gelu(model)
    cfg = config_from_state_dict(model.state_dict())
    cfg = replace(cfg, transformer_heads=_heads(model.transformer, cfg.transformer_width))
    if format == 'hf' and not isinstance(cfg.vision_layers, int):
        raise ValueError(f"{name} is a ResNet CLIP (vision_layers={cfg.vision_layers}); transformers has no ResNet CLIP "
                         f"class, so it cannot be exported with format='hf'. Use format='open_clip'.")
    try: from safetensors.torch import save_file as write_safetensors
    except ImportError: raise ImportError("export_model writes .safetensors files with the safetensors package: "
                                          "pip install safetensors") from None
    sd = {k: v.detach().to('cpu', copy=True) for k, v in model.state_dict().items()}
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    if format == 'hf':
        write_safetensors({k: v.contiguous().clone() for k, v in openai_to_hf(sd).items()}, out / 'model.safetensors',
                          metadata={'format': 'pt'})                      # transformers checks this field
        files = _hf_files(model, cfg, quick_gelu)
        if 'tokenizer_config.json' in files:                             # the BPE files of the tokenizer chapter
            tok = default_tokenizer()
            (out / 'vocab.json').write_text(json.dumps(tok.encoder, ensure_ascii=False), encoding='utf-8')
            merges = sorted(tok.bpe_ranks, key=tok.bpe_ranks.get)
            (out / 'merges.txt').write_text('#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in merges), encoding='utf-8')
    else:
        write_safetensors({k: v.contiguous() for k, v in sd.items()}, out / 'open_clip_model.safetensors')
        files = _open_clip_files(model, cfg, quick_gelu)
    for file, content in files.items():
        (out / file).write_text(json.dumps(content, indent=2) + '\n', encoding='utf-8')
    return out


# %% [markdown]
# The round trip through `load`: MiniCLIP with each activation, written in both formats and read back,
# gives the same features and the same activation; the ResNet MiniCLIP goes to open_clip and is refused,
# by name, for Hugging Face. `tests/test_export.py` proves the other half of the claim: that
# `transformers.CLIPModel.from_pretrained` and open_clip's `create_model('local-dir:…')` read these
# folders and compute our `encode_image` and `encode_text` within 1e-5 (random weights, both
# activations, MiniCLIP and another small ViT, and a ResNet for open_clip).

# %%
for quick_gelu in (True, False):
    src = copy.deepcopy(mini)
    if not quick_gelu:
        for blk in [*src.visual.transformer.resblocks, *src.transformer.resblocks]: blk.mlp.gelu = torch.nn.GELU()
    with torch.no_grad(): want_img, want_txt = src.encode_image(images), src.encode_text(texts)
    for fmt in ('hf', 'open_clip'):
        folder = export_model(src, scratch / f'export-{fmt}-{quick_gelu}', format=fmt)
        back, pre = load(folder, device='cpu')
        test_eq((uses_quick_gelu(back), pre.n_px), (quick_gelu, 48))
        with torch.no_grad():
            test_close(back.encode_image(images), want_img, eps=1e-6)
            test_close(back.encode_text(texts), want_txt, eps=1e-6)
print(sorted(p.name for p in (scratch / 'export-hf-True').iterdir()))
print(sorted(p.name for p in (scratch / 'export-open_clip-True').iterdir()))
rn = create_model('MiniCLIP-RN').eval()
back, _ = load(export_model(rn, scratch / 'export-rn', format='open_clip'), device='cpu')
assert all(torch.equal(back.state_dict()[k], v) for k, v in rn.state_dict().items())
try: export_model(rn, scratch / 'export-rn-hf', format='hf')
except ValueError as e: show(e)
test_fail(lambda: export_model(rn, scratch / 'export-rn-hf'), contains="'MiniCLIP-RN' is a ResNet CLIP")

# %% [markdown]
# ## Checked against the reference implementations
#
# `tests/test_pretrained.py` holds the oracle checks that need heavy dependencies:
#
# - a `transformers.CLIPModel` (random weights moved off their initialisation, QuickGELU and GELU
#   variants) saved with `save_pretrained` loads through `load(dir)` and gives HF's image and text
#   features within 1e-5; a config with other head sizes, or another model type, is refused;
# - open_clip state dicts (ViT and ResNet, plain and wrapped as `{'state_dict': {'module.'+k: v}}`)
#   load and match open_clip's outputs within 1e-5;
# - a TorchScript archive of our model loads with `jit=False` without `torch.jit.load`, equals
#   `torch.jit.load(...).state_dict()`, and loads with `jit=True` through `torch.jit.load`;
# - `download` over real HTTP on the loopback interface: a good file, the cache (no second request), a
#   wrong hash, a transfer cut short and a refused connection, leaving nothing behind on failure;
# - a pickled payload is refused, and never runs, through every reader a user can reach;
# - `preprocess` equals open_clip's OpenAI transform pixel for pixel;
# - our nine URLs are open_clip's `openai` URLs;
# - `dtype=torch.bfloat16` (ViT and ResNet), the activation recorded by a checkpoint or an open_clip
#   folder, the refusals of open_clip options our `CLIP` lacks, `get_tokenizer`, `encode_text` on rows
#   longer than the context, `create_model_and_transforms`, and `TrainTransform` drawing different crops
#   in different `DataLoader` workers, reproducibly.
#
# `tests/test_export.py` checks `export_model` against the libraries it writes for: `transformers`
# and open_clip load the folders with nothing missing or left over and compute our features within
# 1e-5 (MiniCLIP and another small ViT with both activations, MiniCLIP-RN for open_clip), on our tokens
# and on their own tokenizers' tokens; open_clip's transform from the folder equals ours pixel for pixel.
#
# ## What we measured
#
# The numbers of this run, printed by the cells above: the variant table (input resolutions from
# `CONFIGS`), the QuickGELU-versus-GELU gap on random ViT-B/32 weights, the agreement of bfloat16 with
# float32, and the refusals of the payload files. The real-weights cell needs OpenAI's files, which a
# machine without internet does not have.

# %%
print(f"released models: {len(available_models())}, input resolutions "
      f"{sorted({CONFIGS[n].image_resolution for n in available_models()})}")
print(f"QuickGELU vs GELU, random ViT-B/32 weights: feature cosine >= {min(cos_img, cos_txt):.5f}, "
      f"probabilities move by <= {gap:.4f}")
print(f"bfloat16 against float32, MiniCLIP features on a CPU: cosine >= {cos_bf:.4f}")
print(f"payload marker file present after all refusals: {marker.exists()}")
shutil.rmtree(scratch, ignore_errors=True)
_ = footer(_t0)
