# %% [markdown]
# # Appendix: checkpoints
#
# > How `load` gets from a released name or a file to tensors: a download checked against its SHA256, checkpoint files read without running code stored in them, and Hugging Face and open_clip folders mapped to OpenAI's parameter names.

# %%
#| default_exp checkpoints

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import hashlib, http.client, json, math, os, pickle, re, signal, struct, sys, threading, time, urllib.error, urllib.parse
import urllib.request, warnings
from contextlib import contextmanager
from pathlib import Path
import torch
from tqdm import tqdm
from clip_annotated.core import atomic_write, cache_root
from clip_annotated.model import HEAD_WIDTH, CLIPConfig, config_from_state_dict
from clip_annotated.tokenizer import default_tokenizer

# %%
#| hide
import builtins, shutil, tempfile
import numpy as np
from unittest import mock
from fastcore.test import test_eq, test_fail
from safetensors.torch import save_file   # the reference writer (a development dependency)
from clip_annotated.core import seed_everything, footer, remove_scratch, scratch_dir
from clip_annotated.model import create_model
seed_everything(0)
_t0 = time.perf_counter()
scratch = scratch_dir('clip_annotated_02b_')   # every file this chapter writes goes here
def show(e): print(str(e).replace(str(scratch), '<scratch>'))   # error messages, with short paths


# %% [markdown]
# This appendix is machinery. The [pretrained weights](03_pretrained.ipynb) chapter calls it through
# `load`, and a reader of the paper can take it on trust; it is here for whoever wants to know what
# happens to a file before it becomes a model, or has to debug a checkpoint that will not load. At the
# end of it you can
#
# - fetch a released checkpoint so that the file at the destination is always whole and has the
#   SHA256 its URL promises (`download`);
# - read the tensors of a `torch.save` file or a `.safetensors` file without running anything stored
#   in it (`read_weights`; OpenAI's TorchScript archives, and `read_checkpoint`, which reads all three
#   kinds, are [the next appendix](02c_torchscript.ipynb));
# - read a Hugging Face `transformers` or an open_clip CLIP folder into a state dict with OpenAI's
#   parameter names (`read_hf_directory`, `read_open_clip_directory`; the renaming is `hf_to_openai`,
#   and its inverse `openai_to_hf` is what `export_model` writes with).
#
# Whatever the source, the weights end up as a state dict in the OpenAI layout that `build_model` of
# the model chapter reads, its defining shapes checked first (`checked_config`). Only the model, the
# tokenizer and the preliminaries are needed here, so this appendix comes before the chapter that uses it.
#
# ```{mermaid}
# flowchart LR
#   N["released name<br/>'ViT-B/32'"] --> D["download<br/>SHA256-checked cache"] --> A
#   A["TorchScript archive"] --> U["restricted unpickler<br/>tensors only, no code"] --> S
#   P["torch.save file<br/>.safetensors"] --> W["torch.load(weights_only=True)<br/>safetensors reader"] --> S
#   H["Hugging Face directory<br/>config.json + weights"] --> M["rename keys<br/>to OpenAI's layout"] --> S
#   O["open_clip directory<br/>open_clip_config.json + weights"] --> S
#   S["OpenAI-layout<br/>state dict"] --> B["build_model(sd, quick_gelu)<br/>(the pretrained chapter's load)"]
# ```
#
# One rule runs through the appendix: **no code from a checkpoint runs**. A checkpoint is data, and
# every reader below takes tensors out of it without executing anything it carries (the one exception
# is an explicit opt-in, `load(..., jit=True)`, discussed with `load`).
#
# ## Downloading once, and checking what arrived
#
# A checkpoint is hundreds of megabytes fetched over a network that can fail halfway, so `download`
# keeps four promises:
#
# 1. **Nothing half-written is ever at the destination.** Bytes go to a temporary file in the same
#    folder; only a complete transfer whose SHA256 matches is renamed into place, by the preliminaries'
#    `atomic_write` (`os.replace`, which is atomic). On any failure the temporary file is removed, and
#    so it is on Ctrl-C and on a plain `kill` (SIGTERM, which a download turns into the same interrupt
#    while it runs). A download killed outright (SIGKILL, the
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

def sha_from_url(url: str) -> str | None:
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

@contextmanager
def _terminate_cleanly():
    "Within: a SIGTERM (`kill`) raises KeyboardInterrupt, so that what is half written is removed as on Ctrl-C (main thread, default handler only)."
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield; return
    def stop(signum, frame): raise KeyboardInterrupt(f"terminated by signal {signum}")
    signal.signal(signal.SIGTERM, stop)
    try: yield
    finally: signal.signal(signal.SIGTERM, signal.SIG_DFL)

def download(url: str, root: str | os.PathLike | None = None, sha256: str | None = None,
             progress: bool = True, timeout: float = 30.0, deadline: float = 3600.0) -> str:
    """Fetch `url` into `root` (default `cache_root()`) unless a file with the right SHA256 is there; returns its path.

    `timeout` bounds each wait for the server, `deadline` the whole transfer (seconds)."""
    if sha256 is not None and not re.fullmatch(r'[0-9a-fA-F]{64}', str(sha256)):
        raise ValueError(f"sha256={sha256!r} for {url} is not a SHA256: expected 64 hexadecimal digits")
    sha256 = (sha256 or sha_from_url(url) or '').lower()
    if not sha256:
        raise ValueError(f"no SHA256 for {url}: its path does not carry one (OpenAI's layout); pass sha256=")
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name or name in ('.', '..'):
        raise ValueError(f"{url} names no file (its path ends in {'/' if not name else name!r}): give the address of the file itself")
    dest = cache_root(root) / name
    if dest.is_file():
        if sha256sum(dest) == sha256: return str(dest)             # the cache: no request at all
        warnings.warn(f"{dest} does not have SHA256 {sha256}; downloading {url} again")
    elif dest.exists(): raise DownloadError(f"{dest} exists and is not a file; move it away to download {url}")
    failed = lambda why: DownloadError(f"{why}.\n{_by_hand(dest, sha256)}")
    stale, stop = max(timeout, 60.0), time.monotonic() + deadline
    try:
        with _terminate_cleanly(), urllib.request.urlopen(url, timeout=min(timeout, deadline)) as response:
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
# Asked for something that cannot be right, `download` says so before it makes a request: a `sha256`
# that is not 64 hexadecimal digits, or an address that names no file (it ends in `/`; the cache
# folder itself would become the file).

# %%
test_fail(lambda: download(url, cache2, sha256='xyz'), contains="sha256='xyz' for file://")
test_fail(lambda: download(url.rsplit('/', 1)[0] + '/', cache2, sha256=sha), contains="names no file (its path ends in '/')")
assert cache2.is_dir()

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
# So the rule of this appendix: **plain files are read only by readers that cannot run code**.
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
# ### What is around a state dict
#
# `read_weights` reads a `torch.save` file or a `.safetensors` file, told apart by their first bytes
# (`is_safetensors`: a header length followed by `{`), with the matching safe reader, and unwraps what
# training code puts around a state dict: open_clip's training checkpoints hold it under
# `'state_dict'`, the training chapter of this book writes it under `'model'` (beside the optimiser,
# scheduler and RNG states), and `DistributedDataParallel` prefixes every key with `module.`. A
# checkpoint may also say which activation its model used, as a top-level `'quick_gelu': True/False`
# (the training chapter stores `uses_quick_gelu(model)` there); `load` honours it. OpenAI's TorchScript
# archives, and `read_checkpoint`, the one entry point that tells all three formats apart, are the
# [next appendix](02c_torchscript.ipynb).

# %%
#| exports
def is_safetensors(path: str | os.PathLike) -> bool:
    "Whether a file starts as a .safetensors file does: 8 bytes of header length, then the header's `{`."
    with open(path, 'rb') as f: head = f.read(9)
    return len(head) == 9 and head[8:9] == b'{' and not head.startswith(b'PK')

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

def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], bool | None]:
    "The state dict in a torch.save or .safetensors file and the activation it records (`'quick_gelu'` at its top level), if any."
    path = Path(path)
    if path.stat().st_size == 0: raise CheckpointError(f"{path} is not a checkpoint: the file is empty (an interrupted copy?)")
    obj = read_safetensors(path) if is_safetensors(path) else _torch_load(path)
    stored = obj.get('quick_gelu') if isinstance(obj, dict) else None
    if isinstance(obj, dict) and isinstance(stored, bool): obj = {k: v for k, v in obj.items() if k != 'quick_gelu'}
    return _unwrap(obj, path), stored if isinstance(stored, bool) else None


# %%
mini = create_model('MiniCLIP').eval()
torch.save({'epoch': 3, 'state_dict': {f'module.{k}': v for k, v in mini.state_dict().items()}}, scratch / 'train.pt')
(scratch / 'run').mkdir(exist_ok=True)                # a run folder of the training chapter: {'model': ..., 'optimizer': ...}
torch.save({'model': mini.state_dict(), 'optimizer': {'state': {}}, 'data': {'step': 3}, 'quick_gelu': False},
           scratch / 'run' / 'checkpoint.pt')
save_file(mini.state_dict(), scratch / 'mini.safetensors')
for f, stored in (('train.pt', None), ('run/checkpoint.pt', False), ('mini.safetensors', None)):
    sd, quick_gelu = read_weights(scratch / f)
    assert all(torch.equal(sd[k], v) for k, v in mini.state_dict().items()) and len(sd) == len(mini.state_dict())
    test_eq((is_safetensors(scratch / f), quick_gelu), (f.endswith('.safetensors'), stored))
test_fail(lambda: read_weights(scratch / 'payload.pt'), contains='needs more than tensors')
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

def checked_config(sd: dict[str, torch.Tensor], path) -> CLIPConfig:
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
    try: checked_config(sd, 'broken.pt')
    except CheckpointError as e: show(e)
    test_fail(lambda: checked_config(sd, 'broken.pt'), contains=f'broken.pt: {key} has shape {list(bad.shape)}')
test_eq(checked_config(mini.state_dict(), 'mini'), config_from_state_dict(mini.state_dict()))

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
# Unlike a state dict, `config.json` names the activation (`hidden_act`), so the QuickGELU question of
# the [pretrained weights](03_pretrained.ipynb) chapter answers itself for HF checkpoints. It also
# fixes two things our `CLIP` assumes and must check:
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
# `export_model` of the pretrained chapter uses to write Hugging Face folders: the renames in
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
                                  f"OpenAI's, uses heads of size {HEAD_WIDTH} (heads = width // {HEAD_WIDTH})")
        if c['intermediate_size'] != 4 * width:
            raise CheckpointError(f"{file}: {tower} has an MLP of {c['intermediate_size']}, not 4 × {width}")
        if c['layer_norm_eps'] != 1e-5: raise CheckpointError(f"{file}: {tower} uses layer_norm_eps {c['layer_norm_eps']}, not 1e-5")
        if c['hidden_act'] not in ('quick_gelu', 'gelu'):
            raise CheckpointError(f"{file}: {tower} uses hidden_act {c['hidden_act']!r}; only quick_gelu and gelu are supported")
        acts.add(c['hidden_act'])
    if len(acts) > 1: raise CheckpointError(f"{file}: the two towers use different activations {sorted(acts)}")
    return acts == {'quick_gelu'}

def _shard_roots(folder: Path) -> list[Path]:
    "Where the shards of a model folder may really lie: in it, or in the blobs of a Hugging Face cache snapshot."
    real = folder.resolve()
    blobs = real.parent.parent / 'blobs'                  # models--org--name/snapshots/<revision>/x -> ../../blobs/<hash>
    hub = real.parent.name == 'snapshots' and blobs.is_dir() and not blobs.is_symlink()
    return [real, blobs.resolve()] if hub else [real]

def _shard_file(index: Path, key: str, name: str) -> Path:
    "The shard file that `weight_map` names for `key`, refused unopened if it leads outside the index's folder."
    file = index.parent / name
    try: real = file.resolve()
    except (OSError, ValueError, RuntimeError) as e:     # a NUL byte, a symlink loop, ...
        raise CheckpointError(f"{index}: weight_map[{key!r}] = {name!r} is not a usable file name ({e})") from None
    if Path(name).is_absolute() or '..' in Path(name).parts or not any(real.is_relative_to(r) for r in _shard_roots(index.parent)):
        raise CheckpointError(f"{index}: weight_map[{key!r}] = {name!r} leads outside {index.parent} (to {real}), so it "
                              f"was not opened; shards must lie in the model's folder: fix the index or move the shard there")
    return file

def _shards(index: Path) -> list[Path]:
    "The shard files named by the `weight_map` of a sharded checkpoint's index, which must exist beside it."
    weight_map = _read_json(index).get('weight_map')
    if not (isinstance(weight_map, dict) and weight_map and all(isinstance(f, str) for f in weight_map.values())):
        raise CheckpointError(f"{index} has no 'weight_map' (tensor name -> shard file); re-save the model with save_pretrained")
    named = {}                                            # shard name -> its file, checked once
    for key, name in weight_map.items():
        if name not in named: named[name] = _shard_file(index, key, name)
    files = [named[name] for name in sorted(named)]
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
# A big model is saved in shards: an index, `model.safetensors.index.json`, whose `weight_map` names
# the file of every tensor. Those names are data from the download, and a path is more than a name:
# `../other-model/model.safetensors` or `/etc/passwd` would be opened as readily as a shard beside the
# index. So every name must stay in the model's folder, as resolved on disk, so that a symlink beside
# the index that points elsewhere is refused too. The one exception is the Hugging Face cache, where
# every file of `snapshots/<revision>/` is a link into the repository's `blobs/` folder.

# %%
hf_dir = scratch / 'hf-sharded'; hf_dir.mkdir()
(hf_dir / 'config.json').write_text(json.dumps({'model_type': 'clip', 'text_config': {'hidden_size': 128, 'num_attention_heads': 2,
                                                'intermediate_size': 512}, 'vision_config': {'hidden_size': 128,
                                                'num_attention_heads': 2, 'intermediate_size': 512}}))
keys = sorted(hf_sd)
for i, part in enumerate((keys[::2], keys[1::2])): save_file({k: hf_sd[k].clone() for k in part}, hf_dir / f'shard-{i}.safetensors')
index = {'weight_map': {k: f'shard-{i}.safetensors' for i, part in enumerate((keys[::2], keys[1::2])) for k in part}}
(hf_dir / 'model.safetensors.index.json').write_text(json.dumps(index))
sd, quick_gelu = read_hf_directory(hf_dir)
assert quick_gelu and all(torch.equal(sd[k], v) for k, v in mini.state_dict().items())
(scratch / 'elsewhere.safetensors').write_bytes((hf_dir / 'shard-0.safetensors').read_bytes())
(hf_dir / 'link.safetensors').symlink_to(scratch / 'elsewhere.safetensors')
for outside in ['../elsewhere.safetensors', str(scratch / 'elsewhere.safetensors'), 'link.safetensors']:
    (hf_dir / 'model.safetensors.index.json').write_text(json.dumps({'weight_map': {**index['weight_map'], keys[0]: outside}}))
    with mock.patch('builtins.open', side_effect=AssertionError('a shard outside the folder was opened')):
        test_fail(lambda: read_hf_directory(hf_dir), contains=f"weight_map[{keys[0]!r}] = {outside!r} leads outside")
try: read_hf_directory(hf_dir)
except CheckpointError as e: show(e)
shutil.rmtree(hf_dir)

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
                              f"our CLIP, like OpenAI's, uses heads of size {HEAD_WIDTH} (heads = width // {HEAD_WIDTH})")
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
    sd = read_weights(weights)[0]
    got, vision, text = checked_config(sd, weights), cfg['vision_cfg'], cfg['text_cfg']
    stated = dict(embed_dim=cfg.get('embed_dim'), image_resolution=vision.get('image_size'), context_length=text.get('context_length'))
    for field, value in stated.items():
        if value is not None and value != getattr(got, field):
            raise CheckpointError(f"{path}: open_clip_config.json says {field} {value}, the weights in {weights.name} "
                                  f"have {getattr(got, field)}")
    return sd, quick_gelu


# %% [markdown]
# A folder written by hand, the way open_clip lays one out, reads back to MiniCLIP's weights with the
# activation the configuration names; a configuration with layer scale is refused, by name.
# (`export_model` of the pretrained chapter writes such folders, and `tests/test_export.py` has
# open_clip itself read them.)

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
# ## Checked against the reference implementations
#
# Two test files hold what needs real servers, heavy dependencies or many hostile files:
#
# - `tests/test_pretrained.py`: `download` over real HTTP on the loopback interface (a good file, the
#   cache with no second request, a wrong hash, a transfer cut short and a refused connection, leaving
#   nothing behind on failure); a pickled payload refused, and never run, through every reader a user
#   can reach; our safetensors reader against the `safetensors` library; `transformers.CLIPModel`
#   folders mapped through `hf_to_openai`.
# - `tests/test_robust_pretrained.py`: broken Hugging Face and open_clip configurations, sharded indexes
#   without a weight map, safetensors headers that lie, mis-shaped width-defining tensors and files that
#   are not checkpoints at all each raise a `CheckpointError` naming the file and the key; payloads raise
#   `UnsafeCheckpointError` naming the refused global, and no message suggests `weights_only=False`;
#   shard names that lead out of a model's folder are refused
#   unopened, while a Hugging Face cache snapshot still loads; a server that trickles bytes is stopped
#   by `deadline`, and the `.part` files of killed downloads are cleaned.
#
# ## What we checked
#
# What the cells above checked, again here: whether the payload's marker file exists after every
# refusal. (The TorchScript tests are listed in [the next appendix](02c_torchscript.ipynb).)

# %%
print(f"payload marker file present after all refusals: {marker.exists()}")
_ = remove_scratch()
_ = footer(_t0)
