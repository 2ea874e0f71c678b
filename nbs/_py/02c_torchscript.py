# %% [markdown]
# # Appendix: TorchScript archives
#
# > OpenAI's released checkpoints are TorchScript archives: read here into a state dict without running the code they carry, with their sizes checked before anything is inflated; and `read_checkpoint`, one entry point for every kind of checkpoint file.

# %%
#| default_exp torchscript

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import os, pickle, re, sys, warnings, zipfile
from collections import OrderedDict
from pathlib import Path
import torch
from clip_annotated.checkpoints import CheckpointError, UnsafeCheckpointError, is_safetensors, read_weights

# %%
#| hide
import builtins, shutil, tempfile, time, tracemalloc
from unittest import mock
from fastcore.test import test_eq, test_fail
from clip_annotated.core import seed_everything, footer, remove_scratch, scratch_dir
from clip_annotated.model import create_model
from clip_annotated.tokenizer import tokenize
seed_everything(0)
_t0 = time.perf_counter()
scratch = scratch_dir('clip_annotated_02c_')   # every file this appendix writes goes here
def show(e): print(str(e).replace(str(scratch), '<scratch>'))   # error messages, with short paths

marker = scratch / 'payload-ran'
class Payload:
    "Pickles as a call to open(marker, 'w'): unpickling it creates the marker file (the checkpoints appendix's payload)."
    def __reduce__(self): return (builtins.open, (str(marker), 'w'))
torch.save({'visual.proj': torch.zeros(2, 2), 'extra': Payload()}, scratch / 'payload.pt')


# %% [markdown]
# This appendix continues [the checkpoints appendix](02b_checkpoints.ipynb), with its rule: **no code
# from a checkpoint runs**. There, `torch.save` files and `.safetensors` files are read by readers that
# cannot run code; here, the format OpenAI released its models in. At the end of it you can read the tensors of an OpenAI TorchScript archive without
# running anything stored in it (`read_torchscript_weights`), refuse one whose sizes would not fit in
# memory before any of it is inflated, and read any of the three kinds of checkpoint file through one
# entry point (`read_checkpoint`), which `load` of the [pretrained weights](03_pretrained.ipynb) chapter
# calls. A "payload" below is the checkpoints appendix's: a pickle whose loading would create a marker
# file.

# %% [markdown]
# ## Making an archive, and what is inside
#
# OpenAI published its models as TorchScript archives (`torch.jit.save` of traced models), and
# `clip.load` reads them with `torch.jit.load`, which rebuilds the modules *and their code*.
# `torch.load(weights_only=True)` refuses such archives outright. But an archive is a zip file we can
# read ourselves. `save_traced` makes one the way OpenAI's were made: a traced model, with
# `encode_image` and `encode_text` as extra methods (the pretrained chapter and the tests use it to make
# archives to read back).

# %%
#| exports
def save_traced(model, path: str | os.PathLike, images: torch.Tensor, texts: torch.Tensor, half: bool = False) -> Path:
    "Trace `model` as OpenAI traced its releases (forward, encode_image, encode_text) and save the TorchScript archive at `path`."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')         # the tracer's warnings about Python values frozen into the graph: expected
        traced = torch.jit.trace_module(model, {'forward': (images, texts), 'encode_image': (images,),
                                                'encode_text': (texts,)}, check_trace=False)
    if half: traced.half()                      # float16 storages, as in OpenAI's files
    traced.save(str(path))
    return Path(path)


# %% [markdown]
# One made from a MiniCLIP, and what is inside:

# %%
mini = create_model('MiniCLIP').eval()
with torch.no_grad():
    for p in mini.parameters(): p.add_(0.02 * torch.randn_like(p))       # away from the initialisation
images = torch.randn(2, 3, 48, 48)
texts = tokenize(['a red circle', 'a smiling face with sunglasses'], context_length=32)
save_traced(mini, scratch / 'MiniCLIP.pt', images, texts)
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
# refused. While it unpickles, nothing is inflated: a storage is only a reference to its zip entry,
# and a tensor a reference to a strided view of one, which records how far into the storage it
# reaches. Then the module tree is walked, keeping the declared parameters and buffers, and the sizes
# are checked (below) before any storage is read, each into a single buffer that its tensors view.

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

class _Storage:
    "A storage that data.pkl names, not read yet: its zip entry, dtype and size, and how far its tensors reach into it."
    def __init__(self, key: str, entry: zipfile.ZipInfo, dtype: torch.dtype, numel: int):
        self.key, self.entry, self.dtype, self.numel, self.reach, self.data = key, entry, dtype, numel, 0, None

class _TensorRef:
    "A tensor of data.pkl: a strided view of a storage, made once every storage has passed its checks."
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    "A view of a storage (torch._utils._rebuild_tensor_v2's arguments), kept as a reference; records how far it reaches."
    if not (isinstance(storage, _Storage) and isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))
            and len(size) == len(stride) and all(type(i) is int and i >= 0 for i in (offset, *size, *stride))):
        raise UnsafeCheckpointError("a tensor in data.pkl is not built from a storage and non-negative integer sizes")
    end = offset + 1 + sum((n - 1) * st for n, st in zip(size, stride)) if all(size) else 0   # elements it reaches
    if end > storage.numel:
        raise CheckpointError(f"a tensor of shape {list(size)} reaches element {end:,} of storage data/{storage.key}, "
                              f"which has {storage.numel:,}")
    storage.reach = max(storage.reach, end)
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


# %%
#| exports
class _ArchiveUnpickler(pickle.Unpickler):
    "Unpickles a TorchScript archive's data.pkl into ModuleRecords and tensor references; refuses every other global."
    _safe = {('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor, ('collections', 'OrderedDict'): OrderedDict,
             **{('torch.jit._pickle', f'build_{kind}list'): list for kind in ('int', 'double', 'bool', 'tensor')},
             ('torch.jit._pickle', 'restore_type_tag'): lambda value, type_str: value}   # typed attributes of scripted modules

    def __init__(self, zf: zipfile.ZipFile, prefix: str, path):
        super().__init__(zf.open(_record(zf, f'{prefix}data.pkl', path)))
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
                and re.fullmatch(r'\w+', str(pid[2])) and type(pid[4]) is int and pid[4] >= 0):
            raise UnsafeCheckpointError(f"{self.path}: unexpected persistent id {pid!r} in data.pkl")
        dtype, key, numel = pid[1], str(pid[2]), pid[4]
        if key not in self.storages:
            try: entry = self.zf.getinfo(f'{self.prefix}data/{key}')
            except KeyError: raise CheckpointError(f"{self.path}: storage data/{key} is missing") from None
            if entry.file_size != numel * dtype.itemsize:   # checked before anything is inflated
                raise CheckpointError(f"{self.path}: storage data/{key} would inflate to {entry.file_size:,} bytes, but "
                                      f"data.pkl declares {numel:,} elements of {dtype} ({numel * dtype.itemsize:,} bytes); "
                                      f"the archive is damaged or forged and was not read; fetch it again from its source")
            self.storages[key] = _Storage(key, entry, dtype, numel)
        return self.storages[key]

    def tensor(self, ref: _TensorRef) -> torch.Tensor:
        "The tensor a reference stands for, its storage read on first use."
        s = ref.storage
        if s.data is None:
            s.data = torch.frombuffer(_inflate(self.zf, s.entry), dtype=s.dtype) if s.numel else torch.empty(0, dtype=s.dtype)
        return s.data.as_strided(ref.size, ref.stride, ref.offset)


# %%
#| exports
_SPARE_BYTES = 1 << 20     # bytes a storage may hold beyond what its tensors reach (a view of a larger tensor)
_MAX_INFLATION = 16        # how many times its size on disk an archive's storages may inflate to
_MAX_RECORD = 1 << 26      # bytes of data.pkl or one code file, inflated

def _inflate(zf: zipfile.ZipFile, entry: zipfile.ZipInfo) -> bytearray:
    "The bytes of a zip entry whose size was checked, read into one buffer in 1 MiB pieces (no second copy)."
    buf, got = bytearray(entry.file_size), 0
    with zf.open(entry) as f:
        view = memoryview(buf)
        while got < len(buf) and (n := f.readinto(view[got:got + (1 << 20)])): got += n
    if got != len(buf): raise CheckpointError(f"storage {entry.filename} holds {got:,} bytes, not {len(buf):,}")
    return buf

def _record(zf: zipfile.ZipFile, name: str, path) -> zipfile.ZipInfo:
    "The entry of data.pkl or a code file, refused unread if it would inflate past _MAX_RECORD bytes."
    entry = zf.getinfo(name)
    if entry.file_size > _MAX_RECORD:
        raise CheckpointError(f"{path}: {name} would inflate to {entry.file_size:,} bytes, more than the "
                              f"{_MAX_RECORD:,} any CLIP archive needs; not read (a zip bomb?); fetch the file from its source")
    return entry

def _check_storages(storages: dict[str, _Storage], path) -> None:
    "Refuse, before any is read, a storage larger than its tensors reach, or storages that inflate far past the file."
    for s in storages.values():
        used = s.reach * s.dtype.itemsize
        if s.entry.file_size > used + _SPARE_BYTES:
            raise CheckpointError(f"{path}: storage data/{s.key} would inflate to {s.entry.file_size:,} bytes, but its "
                                  f"tensors use {used:,}; not read (a zip bomb?). If the model is yours, save it "
                                  f"again with its tensors cloned")
    total, on_disk = sum(s.entry.file_size for s in storages.values()), Path(path).stat().st_size
    if total > _MAX_INFLATION * on_disk + _SPARE_BYTES:
        big = max(storages.values(), key=lambda s: s.entry.file_size)
        raise CheckpointError(f"{path}: its storages would inflate to {total:,} bytes from a file of {on_disk:,} "
                              f"(storage data/{big.key}: {big.entry.file_size:,}); weights do not compress more "
                              f"than {_MAX_INFLATION}-fold, so none was read (a zip bomb?); fetch the file from its source")

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
        text = zf.read(_record(zf, n, zf.filename)).decode('utf-8', 'replace')
        for cls, params, bufs in re.findall(r'^class (\w+)\(Module\):\n\s+__parameters__ = \[([^\]]*)\]\n'
                                            r'\s+__buffers__ = \[([^\]]*)\]', text, flags=re.M):
            declared[f'{module}.{cls}'] = set(re.findall(r'"(\w+)"', params + bufs))
    return declared

def _flatten(record: ModuleRecord, declared: dict, prefix: str = '') -> dict[str, _TensorRef]:
    "The state dict of a module tree: declared parameters and buffers (all tensors if a class is undeclared)."
    keep, out = declared.get(record.qualname), {}
    for k, v in record.attrs.items():
        if isinstance(v, ModuleRecord): out.update(_flatten(v, declared, f'{prefix}{k}.'))
        elif isinstance(v, _TensorRef) and (keep is None or k in keep): out[prefix + k] = v
    return out

def _read_archive(path) -> dict[str, torch.Tensor]:
    with zipfile.ZipFile(path) as zf:
        prefix = _archive_prefix(zf)
        if prefix is None: raise CheckpointError(f"{path} is a zip file but not a TorchScript archive")
        has_order = f'{prefix}byteorder' in zf.namelist()
        order = zf.read(_record(zf, f'{prefix}byteorder', path)).decode().strip() if has_order else 'little'
        if order != sys.byteorder: raise CheckpointError(f"{path} holds {order}-endian tensors; this machine is {sys.byteorder}-endian")
        unpickler = _ArchiveUnpickler(zf, prefix, path)
        root = unpickler.load()                       # sizes and offsets only: no storage is read yet
        if not isinstance(root, ModuleRecord): raise CheckpointError(f"{path}: data.pkl does not hold a module")
        refs = _flatten(root, _declared_state(zf, prefix))
        _check_storages(unpickler.storages, path)
        return {k: unpickler.tensor(ref) for k, ref in refs.items()}

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
# And an archive whose `data.pkl` carries that payload is refused at the first global it
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
# Nothing runs, but memory is a resource too. A zip entry states how many bytes it inflates to, and a
# few hundred kilobytes of deflated zeros can claim a gigabyte: an archive whose storage was swapped for
# such an entry made `predict` allocate gigabytes before it failed (issue #26), and one whose `data.pkl`
# agreed would have loaded. So before any storage is inflated the reader checks the sizes it has been
# told, three ways. An entry must inflate to exactly what `data.pkl` declares for its storage (elements
# × element size), as `torch.jit.save` writes it. A storage may hold at most `_SPARE_BYTES` (one MiB)
# more than its tensors reach: a buffer that views part of a larger tensor drags the whole storage
# along, but a few floats never need a gigabyte. And all storages together may inflate to at most
# `_MAX_INFLATION` (16) times the file's size on disk: `torch.jit.save` does not compress at all, and
# trained weights hardly compress, while zeros deflate a thousandfold. (`data.pkl` and the code files,
# also read, may not inflate past `_MAX_RECORD`.) The MiniCLIP archive with its first storage swapped
# for a quarter of a GiB of deflated zeros:

# %%
with zipfile.ZipFile(scratch / 'MiniCLIP.pt') as src, zipfile.ZipFile(scratch / 'bomb.pt', 'w') as dst:
    for item in src.infolist():
        if not item.filename.endswith('/data/0'): dst.writestr(item, src.read(item)); continue
        zeros = zipfile.ZipInfo(item.filename); zeros.compress_type = zipfile.ZIP_DEFLATED
        with dst.open(zeros, 'w', force_zip64=True) as f:
            for _ in range(256): f.write(bytes(1 << 20))
tracemalloc.start()
try: read_torchscript_weights(scratch / 'bomb.pt')
except CheckpointError as e: show(e); bomb_error = e
peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
grown = (scratch / 'bomb.pt').stat().st_size - (scratch / 'MiniCLIP.pt').stat().st_size
print(f"the swap changed the file by {grown / 2**10:+.0f} KiB; refusing it allocated {peak / 2**20:.2f} MiB")
assert 'data/0' in str(bomb_error) and peak < 8 << 20


# %% [markdown]
# ## One entry point for files
#
# `read_checkpoint` tells the three formats apart by their first bytes (a zip starts with `PK`, and a
# TorchScript archive is a zip with a `data.pkl` beside its `code/`; a safetensors file starts with a
# header length followed by `{`), and reads the tensors with the matching safe reader: the archive
# reader above, or `read_weights` of [the checkpoints appendix](02b_checkpoints.ipynb) for a
# `torch.save` or `.safetensors` file, which also unwraps what training code puts around a state dict.
# `load` of the pretrained chapter calls `read_file`, which also returns the activation a file records:
# QuickGELU for OpenAI's archives.

# %%
#| exports
def checkpoint_format(path: str | os.PathLike) -> str:
    "'torchscript', 'safetensors' or 'torch' (a torch.save file), judged from the file's first bytes."
    if is_safetensors(path): return 'safetensors'
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if _archive_prefix(zf) is not None: return 'torchscript'
    return 'torch'

def read_file(path: Path) -> tuple[dict[str, torch.Tensor], bool | None]:
    "The state dict in a checkpoint file and the activation it records (`'quick_gelu'` at its top level), if any."
    if not path.is_file(): raise FileNotFoundError(f"no checkpoint file at {path}")
    if path.stat().st_size == 0: raise CheckpointError(f"{path} is not a checkpoint: the file is empty (an interrupted copy?)")
    if checkpoint_format(path) == 'torchscript': return read_torchscript_weights(path), True   # OpenAI's archives: QuickGELU
    return read_weights(path)

def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    "The state dict in a checkpoint file (TorchScript archive, torch.save file, .safetensors), read without running code."
    return read_file(Path(path))[0]


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
# ## What we checked
#
# `tests/test_pretrained.py` reads TorchScript archives of our model (traced, scripted with typed
# attributes, float16) without `torch.jit.load` and checks them equal to `torch.jit.load(...).state_dict()`;
# `tests/test_robust_pretrained.py` has archives whose storages would inflate far past what their tensors
# need (zip bombs) refused unread, in little memory. The counts of this run, printed by the cells above
# and again here: the tensors read from the traced MiniCLIP archive, and whether the payload's marker
# file exists after every refusal.

# %%
print(f"TorchScript archive read without its code: {len(read_torchscript_weights(scratch / 'MiniCLIP.pt'))} tensors, "
      f"all equal to the model's")
print(f"payload marker file present after all refusals: {marker.exists()}")
_ = remove_scratch()
_ = footer(_t0)
