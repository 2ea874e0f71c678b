"""Malformed inputs to `clip_annotated.checkpoints` and `clip_annotated.pretrained` fail with their own errors, naming the input (issue #14, items 5 and 7).

* loading: broken Hugging Face and open_clip configurations, sharded indexes without a weight map, safetensors
  headers that lie, state dicts whose width-defining tensors are mis-shaped, and files that are simply not
  checkpoints all raise `CheckpointError` naming the file and the key; payloads raise `UnsafeCheckpointError`
  naming the refused global; no message suggests `weights_only=False`.
* hostile sizes and paths (issue #26, items 5 and 6): TorchScript archives whose storages would inflate far past
  what their tensors need are refused before anything is inflated, in bounded memory; an HF shard index entry
  that leads out of the model's folder (`..`, an absolute path, a symlink) is refused without being opened.
* downloading: a server that trickles bytes is stopped by `deadline`, a malformed `Content-Length` is an unknown
  size, the `.part` files of killed downloads are cleaned, and the cache follows `CLIP_ANNOTATED_CACHE`; a failure
  leaves no `.part` behind and the file that was there before untouched.
"""
from __future__ import annotations

import builtins, hashlib, http.server, json, os, pickle, shutil, struct, threading, time, zipfile
from pathlib import Path

import pytest
import torch

from clip_annotated.core import cache_root
from clip_annotated.model import create_model
from clip_annotated.pretrained import export_model, get_tokenizer, load
from clip_annotated.checkpoints import (CheckpointError, DownloadError, UnsafeCheckpointError, download, read_hf_directory,
                                        read_open_clip_directory, read_safetensors)
from clip_annotated.torchscript import read_checkpoint, read_torchscript_weights

pytestmark = pytest.mark.filterwarnings('ignore:Detected pickle protocol:UserWarning')


def _refused(read, *names, error=CheckpointError):
    "Run `read`; it must raise exactly `error`, naming every one of `names`, and never suggest weights_only=False."
    with pytest.raises(CheckpointError) as e: read()
    msg = str(e.value)
    assert type(e.value) is error, f"{type(e.value).__name__}, not {error.__name__}: {msg}"
    for name in names: assert str(name) in msg, f"the message does not name {name}: {msg}"
    assert 'weights_only' not in msg, f"the message suggests turning safety off: {msg}"
    return msg


@pytest.fixture(scope='module')
def mini():
    return create_model('MiniCLIP').eval()


@pytest.fixture(scope='module')
def hf_folder(mini, tmp_path_factory):
    "A valid Hugging Face folder of MiniCLIP (export_model), to copy and break."
    return export_model(mini, tmp_path_factory.mktemp('hf') / 'mini', format='hf')


def _hf_config(tmp_path, content: bytes | str, name='hf'):
    "A folder with only config.json (the configuration is read before any weight)."
    folder = tmp_path / name
    folder.mkdir()
    (folder / 'config.json').write_bytes(content.encode() if isinstance(content, str) else content)
    return folder


# ------------------------------------------------------------------ Hugging Face configurations

@pytest.mark.parametrize('content, says', [
    ('{"model_type": "clip", "text_config": {', 'is not valid JSON'),
    ('', 'is empty'),
    ('  \n', 'is empty'),
    ('[1, 2, 3]', 'holds a JSON list'),
    ('"clip"', 'holds a JSON str'),
    (b'{"model_type": "clip\xff\xfe"}', 'is not UTF-8'),
    ('[' * 100_000, 'config.json'),                                  # nested beyond the parser's recursion limit
])
def test_hf_config_not_a_json_object(hf_folder, tmp_path, content, says):
    folder = _hf_config(tmp_path, content)
    msg = _refused(lambda: load(folder, device='cpu'), folder / 'config.json')
    assert says in msg
    _refused(lambda: read_hf_directory(folder), folder / 'config.json')


@pytest.mark.parametrize('change, key', [
    (lambda c: c.update(text_config='big'), 'text_config is a str'),
    (lambda c: c.update(vision_config=[1, 2]), 'vision_config is a list'),
    (lambda c: c['text_config'].update(num_attention_heads=0), 'text_config.num_attention_heads is 0'),
    (lambda c: c['vision_config'].update(num_attention_heads=-2), 'vision_config.num_attention_heads is -2'),
    (lambda c: c['text_config'].update(hidden_size='128'), "text_config.hidden_size is '128'"),
    (lambda c: c['text_config'].update(hidden_size=128.0), 'text_config.hidden_size is 128.0'),
    (lambda c: c['vision_config'].update(intermediate_size=True), 'vision_config.intermediate_size is True'),
    (lambda c: c['text_config'].update(hidden_act=['gelu']), "hidden_act ['gelu']"),
    (lambda c: c.pop('model_type'), 'model_type None'),
])
def test_hf_config_bad_fields(hf_folder, tmp_path, change, key):
    config = json.loads((hf_folder / 'config.json').read_text())
    change(config)
    folder = _hf_config(tmp_path, json.dumps(config))
    _refused(lambda: load(folder, device='cpu'), folder / 'config.json', key)


@pytest.mark.parametrize('weights', ['model.safetensors', 'pytorch_model.bin'])
@pytest.mark.parametrize('index, says', [
    ({'metadata': {'total_size': 10}}, "has no 'weight_map'"),
    ({'weight_map': {}}, "has no 'weight_map'"),
    ({'weight_map': ['model-00001-of-00002.safetensors']}, "has no 'weight_map'"),
    ({'weight_map': {'logit_scale': 3}}, "has no 'weight_map'"),
    ({'weight_map': {'logit_scale': 'model-00001-of-00002.x'}}, 'model-00001-of-00002.x'),
    ('[]', 'holds a JSON list'),
    ('{"weight_map": ', 'is not valid JSON'),
])
def test_hf_index_without_a_usable_weight_map(hf_folder, tmp_path, weights, index, says):
    folder = tmp_path / 'sharded'
    folder.mkdir()
    shutil.copy(hf_folder / 'config.json', folder / 'config.json')
    (folder / f'{weights}.index.json').write_text(index if isinstance(index, str) else json.dumps(index))
    msg = _refused(lambda: load(folder, device='cpu'), folder / f'{weights}.index.json')
    assert says in msg


def test_hf_sharded_index_that_works(hf_folder, tmp_path, mini):
    "The neighbour of the refusals: a real index with two shards loads."
    from safetensors.torch import load_file, save_file
    folder = tmp_path / 'sharded'
    folder.mkdir()
    shutil.copy(hf_folder / 'config.json', folder / 'config.json')
    sd = load_file(hf_folder / 'model.safetensors')
    keys = sorted(sd)
    shards = {'model-00001-of-00002.safetensors': keys[::2], 'model-00002-of-00002.safetensors': keys[1::2]}
    for file, names in shards.items(): save_file({k: sd[k] for k in names}, folder / file)
    (folder / 'model.safetensors.index.json').write_text(json.dumps(
        {'weight_map': {k: f for f, names in shards.items() for k in names}}))
    model, _ = load(folder, device='cpu')
    assert all(torch.equal(model.state_dict()[k], v) for k, v in mini.state_dict().items())


def _sharded_copy(hf_folder: Path, folder: Path, weights: str, escape: str) -> Path:
    "An HF folder whose index maps every tensor to its one real shard except logit_scale, mapped to `escape`."
    from safetensors.torch import load_file
    folder.mkdir(parents=True)
    shutil.copy(hf_folder / 'config.json', folder / 'config.json')
    sd, shard = load_file(hf_folder / 'model.safetensors'), f'{weights}-00001-of-00001'
    shutil.copy(hf_folder / 'model.safetensors', folder / shard) if weights == 'model.safetensors' else torch.save(sd, folder / shard)
    index = {'weight_map': {**{k: shard for k in sd}, 'logit_scale': escape}}
    (folder / f'{weights}.index.json').write_text(json.dumps(index))
    return folder / f'{weights}.index.json'


@pytest.mark.parametrize('weights', ['model.safetensors', 'pytorch_model.bin'])
@pytest.mark.parametrize('escape', ['dotdot', 'absolute', 'passwd', 'symlink', 'symlinked_folder', 'nul'])
def test_hf_index_entry_outside_the_folder(hf_folder, tmp_path, monkeypatch, weights, escape):
    "A weight_map entry that leads out of the model's folder (by .., an absolute path or a symlink) is refused unopened."
    outside = tmp_path / 'outside'
    outside.mkdir()
    shutil.copy(hf_folder / 'model.safetensors', outside / 'x')            # a real checkpoint: loading it would succeed
    name = {'dotdot': '../outside/x', 'absolute': str(outside / 'x'), 'passwd': '/etc/passwd', 'symlink': 'link',
            'symlinked_folder': 'sub/x', 'nul': 'x\x00y'}[escape]
    index = _sharded_copy(hf_folder, tmp_path / 'model', weights, name)
    if escape == 'symlink': (index.parent / 'link').symlink_to(outside / 'x')
    if escape == 'symlinked_folder': (index.parent / 'sub').symlink_to(outside, target_is_directory=True)
    opened, real_open = [], builtins.open
    monkeypatch.setattr(builtins, 'open', lambda f, *a, **k: opened.append(Path(f).resolve()) or real_open(f, *a, **k))
    for read in (lambda: read_hf_directory(index.parent), lambda: load(index.parent, device='cpu')):
        msg = _refused(read, index, repr(name))
        assert ('is not a usable file name' if escape == 'nul' else 'leads outside') in msg and 'logit_scale' in msg
    assert not [f for f in opened if not f.is_relative_to((tmp_path / 'model').resolve())], opened


def _hub_snapshot(hf_folder: Path, cache: Path, repo: str, shard_target=None) -> Path:
    "A Hugging Face cache layout of a two-shard model: snapshots/<revision>/ holds links into ../../blobs/."
    from safetensors.torch import load_file, save_file
    blobs, snap = cache / repo / 'blobs', cache / repo / 'snapshots' / 'f00d'
    blobs.mkdir(parents=True); snap.mkdir(parents=True)
    sd = load_file(hf_folder / 'model.safetensors')
    keys = sorted(sd)
    files = {'config.json': (hf_folder / 'config.json').read_bytes(),
             'model.safetensors.index.json': json.dumps({'weight_map': {k: f'model-0000{1 + i % 2}-of-00002.safetensors'
                                                                        for i, k in enumerate(keys)}}).encode()}
    for n in (1, 2):
        save_file({k: sd[k] for i, k in enumerate(keys) if i % 2 == n - 1}, blobs / 'tmp')
        files[f'model-0000{n}-of-00002.safetensors'] = (blobs / 'tmp').read_bytes()
    (blobs / 'tmp').unlink()
    for name, data in files.items():
        blob = hashlib.sha256(data).hexdigest()
        (blobs / blob).write_bytes(data)
        (snap / name).symlink_to(Path('..') / '..' / 'blobs' / blob)
    if shard_target is not None:
        (snap / 'model-00002-of-00002.safetensors').unlink()
        (snap / 'model-00002-of-00002.safetensors').symlink_to(shard_target)
    return snap


def test_hf_cache_snapshot_links_into_blobs(hf_folder, tmp_path, mini):
    "The neighbour of the refusals: a Hub cache snapshot, whose files link into ../../blobs, loads; a link elsewhere does not."
    snap = _hub_snapshot(hf_folder, tmp_path / 'hub', 'models--org--clip')
    model, _ = load(snap, device='cpu')
    assert all(torch.equal(model.state_dict()[k], v) for k, v in mini.state_dict().items())
    other = _hub_snapshot(hf_folder, tmp_path / 'hub', 'models--evil--clip')
    elsewhere = next(p for p in (other.parent.parent / 'blobs').iterdir())
    snap = _hub_snapshot(hf_folder, tmp_path / 'hub2', 'models--org--clip', shard_target=elsewhere)
    _refused(lambda: read_hf_directory(snap), snap / 'model.safetensors.index.json', 'model-00002-of-00002.safetensors')


def test_hf_weights_that_are_not_a_state_dict(hf_folder, tmp_path):
    folder = _hf_config(tmp_path, (hf_folder / 'config.json').read_text())
    torch.save([1, 2, 3], folder / 'pytorch_model.bin')
    _refused(lambda: load(folder, device='cpu'), folder / 'pytorch_model.bin')
    (folder / 'pytorch_model.bin').unlink()
    torch.save({'text_model.embeddings.token_embedding.weight': torch.zeros(3, 3, 3),
                'visual_projection.weight': torch.zeros(2, 2, 2)}, folder / 'pytorch_model.bin')
    _refused(lambda: load(folder, device='cpu'), folder / 'pytorch_model.bin')


# ------------------------------------------------------------------ open_clip configurations

@pytest.mark.parametrize('content, says', [
    ('{"model_cfg": ', 'is not valid JSON'),
    ('', 'is empty'),
    ('[{"model_cfg": {}}]', 'holds a JSON list'),
    (b'\xff{"model_cfg": {}}', 'is not UTF-8'),
    ('{"model": {}}', "'model_cfg'"),
    ('{"model_cfg": [1]}', "'model_cfg'"),
    ('{"model_cfg": {"embed_dim": 128}}', 'vision_cfg and text_cfg'),
    ('{"model_cfg": {"vision_cfg": "ViT", "text_cfg": {}}}', 'vision_cfg and text_cfg'),
])
def test_open_clip_config_broken(tmp_path, content, says):
    folder = tmp_path / 'oc'
    folder.mkdir()
    (folder / 'open_clip_config.json').write_bytes(content.encode() if isinstance(content, str) else content)
    msg = _refused(lambda: load(folder, device='cpu'), folder)
    assert says in msg
    _refused(lambda: read_open_clip_directory(folder), folder)


def test_open_clip_folder_without_its_config(tmp_path):
    "read_open_clip_directory called on a folder that has no open_clip_config.json."
    (tmp_path / 'oc').mkdir()
    _refused(lambda: read_open_clip_directory(tmp_path / 'oc'), tmp_path / 'oc' / 'open_clip_config.json')


# ------------------------------------------------------------------ safetensors headers

def _safetensors(path: Path, header, data: bytes = b'', length: int | None = None) -> Path:
    "A .safetensors file by hand: 8-byte little-endian header length, the JSON header, the data."
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack('<Q', len(head) if length is None else length) + head + data)
    return path


F32 = lambda shape, start, end: {'dtype': 'F32', 'shape': shape, 'data_offsets': [start, end]}


@pytest.mark.parametrize('header, data, says', [
    ({'w': 7}, b'', "tensor 'w' is described by a int"),
    ({'w': [1, 2]}, b'', "tensor 'w' is described by a list"),
    ({'w': {'dtype': 'F32', 'data_offsets': [0, 4]}}, bytes(4), "tensor 'w' has no shape"),
    ({'w': {'dtype': 'F32', 'shape': [1]}}, bytes(4), "tensor 'w' has no data_offsets"),
    ({'w': {'shape': [1], 'data_offsets': [0, 4]}}, bytes(4), "tensor 'w' has no dtype"),
    ({'w': F32([2.0], 0, 8)}, bytes(8), "tensor 'w' has shape [2.0]"),
    ({'w': F32(['2'], 0, 8)}, bytes(8), "tensor 'w' has shape ['2']"),
    ({'w': F32([-2], 0, 8)}, bytes(8), "tensor 'w' has shape [-2]"),
    ({'w': F32([True], 0, 4)}, bytes(4), "tensor 'w' has shape [True]"),
    ({'w': F32(2, 0, 8)}, bytes(8), "tensor 'w' has shape 2"),
    ({'w': F32([2], -8, 0)}, bytes(8), "tensor 'w' has data_offsets [-8, 0]"),
    ({'w': F32([2], 8, 0)}, bytes(8), "tensor 'w' has data_offsets [8, 0]"),
    ({'w': F32([2], 0, 8.0)}, bytes(8), "tensor 'w' has data_offsets [0, 8.0]"),
    ({'w': F32([2], 0, 8) | {'data_offsets': [0]}}, bytes(8), "tensor 'w' has data_offsets [0]"),
    ({'w': F32([1000], 0, 4000)}, bytes(40), "tensor 'w' claims bytes 0..4000"),
    ({'w': F32([2], 0, 4)}, bytes(8), "tensor 'w' of shape [2] needs 8 bytes"),
    ({'w': F32([2 ** 32, 2 ** 32], 0, 0)}, b'', "tensor 'w' of shape"),           # int64 overflow of the size
    ({'w': {'dtype': 'F8_E9', 'shape': [1], 'data_offsets': [0, 1]}}, bytes(1), "unsupported dtype 'F8_E9'"),
    ({'w': {'dtype': ['F32'], 'shape': [1], 'data_offsets': [0, 4]}}, bytes(4), "unsupported dtype ['F32']"),
    ([1, 2], b'', 'the safetensors header is a JSON list'),
    (b'{"w": ', b'', 'the safetensors header is not JSON'),
    (b'{"w": "\xff"}', b'', 'the safetensors header is not JSON'),
])
def test_safetensors_header_that_lies(tmp_path, header, data, says):
    f = _safetensors(tmp_path / 'w.safetensors', header, data)
    msg = _refused(lambda: read_safetensors(f), f)
    assert says in msg
    if isinstance(header, dict): _refused(lambda: load(f, device='cpu'), f)   # load sees it as a safetensors file


def test_safetensors_header_longer_than_the_file(tmp_path):
    f = _safetensors(tmp_path / 'long.safetensors', {'w': F32([1], 0, 4)}, bytes(4), length=10_000)
    assert 'header length 10000' in _refused(lambda: read_safetensors(f), f)
    f = _safetensors(tmp_path / 'huge.safetensors', b'{}', length=2 ** 63)
    _refused(lambda: read_safetensors(f), f)


def test_safetensors_made_by_hand_reads(tmp_path):
    "The neighbour of the refusals: a header written by hand, with metadata and an empty tensor, reads."
    data = struct.pack('<3f', 1.0, 2.0, 3.0)
    f = _safetensors(tmp_path / 'ok.safetensors', {'__metadata__': {'format': 'pt'}, 'w': F32([3], 0, 12),
                                                   'e': F32([0, 5], 12, 12)}, data)
    got = read_safetensors(f)
    assert torch.equal(got['w'], torch.tensor([1.0, 2.0, 3.0])) and got['e'].shape == (0, 5)


# ------------------------------------------------------------------ files that are not checkpoints

def test_random_bytes_are_not_a_checkpoint(tmp_path):
    "Not 'unsafe': a file that is simply not a checkpoint says so, and suggests nothing about weights_only."
    rng = torch.Generator().manual_seed(0)
    cases = {'noise.pt': bytes(torch.randint(0, 256, (4096,), generator=rng, dtype=torch.uint8).tolist()),
             'text.pt': b'hello, this is a README and not a checkpoint\n',
             'truncated.pt': pickle.dumps({'a': 1.5, 'b': [1, 2, 3]}, protocol=2)[:-4],
             'pickle-junk.pt': pickle.dumps({'a': 1.5}, protocol=2) + b'junk',
             'zeros.pt': bytes(1000),
             'pk.pt': b'PK\x03\x04' + bytes(100)}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        for read in (lambda: read_checkpoint(tmp_path / name), lambda: load(tmp_path / name, device='cpu')):
            msg = _refused(read, tmp_path / name)
            assert 'is not a checkpoint' in msg and 'torch.save' in msg, msg


def test_empty_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / 'empty.pt').write_bytes(b'')
    assert 'empty' in _refused(lambda: load(tmp_path / 'empty.pt', device='cpu'), tmp_path / 'empty.pt')


def test_state_dict_with_non_string_keys(tmp_path):
    torch.save({1: torch.zeros(2), 2: torch.zeros(2)}, tmp_path / 'ints.pt')
    _refused(lambda: load(tmp_path / 'ints.pt', device='cpu'), tmp_path / 'ints.pt', 'keys [1, 2]')


class _Payload:
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (builtins.open, (self.marker, 'w'))


def test_unsafe_message_names_the_global_and_keeps_safety_on(tmp_path):
    marker = tmp_path / 'ran'
    torch.save({'visual.proj': torch.zeros(2, 2), 'x': _Payload(marker)}, tmp_path / 'payload.pt')
    msg = _refused(lambda: load(tmp_path / 'payload.pt', device='cpu'), tmp_path / 'payload.pt', 'io.open',
                   error=UnsafeCheckpointError)
    assert 'refused' in msg and 'was run' in msg and 'False' not in msg
    assert not marker.exists()


def test_damaged_torchscript_archive(tmp_path):
    "A zip that looks like a TorchScript archive but whose data.pkl is cut short, or absent from a storage."
    with zipfile.ZipFile(tmp_path / 'ts.pt', 'w') as zf:
        zf.writestr('archive/data.pkl', pickle.dumps({'a': 1}, protocol=2)[:-3])
        zf.writestr('archive/constants.pkl', pickle.dumps((), protocol=2))
        zf.writestr('archive/version', '3\n')
    for read in (lambda: read_torchscript_weights(tmp_path / 'ts.pt'), lambda: load(tmp_path / 'ts.pt', device='cpu')):
        _refused(read, tmp_path / 'ts.pt')


# ------------------------------------------------------------------ zip bombs in TorchScript archives (issue #26 item 5)

BOMB = 128 << 20   # bytes a forged storage inflates to: about 128 KiB deflated


def _write_zeros(zf: zipfile.ZipFile, name: str, n: int):
    "A deflated entry of `n` zero bytes, written in 1 MiB pieces."
    info = zipfile.ZipInfo(name); info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, 'w', force_zip64=True) as f:
        for start in range(0, n, 1 << 20): f.write(bytes(min(1 << 20, n - start)))


def _forged_archive(path: Path, monkeypatch, numel: int, size: tuple, entry_bytes: int) -> Path:
    "A TorchScript-looking archive: one module whose tensor of `size` views float storage data/0 of `numel` elements."
    import collections, io, sys, types
    class Storage: pass
    class Tensor:
        def __reduce__(self):
            stride = tuple(int(torch.tensor(size[i + 1:]).prod()) for i in range(len(size)))
            return torch._utils._rebuild_tensor_v2, (Storage, 0, size, stride, False, collections.OrderedDict())
    M = type('M', (), {'__module__': '__torch__'})             # pickled as the TorchScript class __torch__.M
    class Module:
        def __reduce__(self): return M, (), {'w': Tensor()}
    monkeypatch.setitem(sys.modules, '__torch__', types.SimpleNamespace(M=M))
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj): return ('storage', torch.FloatStorage, '0', 'cpu', numel) if obj is Storage else None
    buf = io.BytesIO(); Pickler(buf, protocol=2).dump(Module())
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as zf:
        zf.writestr('archive/data.pkl', buf.getvalue())
        zf.writestr('archive/constants.pkl', pickle.dumps((), protocol=2))
        _write_zeros(zf, 'archive/data/0', entry_bytes)
    return path


def _bombed_mini(mini, path: Path) -> Path:
    "MiniCLIP's TorchScript archive with its first storage replaced by BOMB deflated zero bytes (the issue's file)."
    from clip_annotated.torchscript import save_traced
    from clip_annotated.tokenizer import tokenize
    save_traced(mini, path.with_suffix('.orig'), torch.randn(1, 3, 48, 48), tokenize(['a cat'], context_length=32))
    with zipfile.ZipFile(path.with_suffix('.orig')) as src, zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if item.filename.endswith('/data/0'): _write_zeros(dst, item.filename, BOMB)
            else: dst.writestr(item.filename, src.read(item))
    return path


@pytest.mark.parametrize('kind, says', [
    ('mini', 'data.pkl declares'),                  # a real archive, one storage swapped for a bomb
    ('declared', 'data.pkl declares 12 elements'),  # the entry is larger than data.pkl says
    ('unused', 'but its tensors use 48'),           # data.pkl agrees, but its one tensor uses 12 floats
    ('consistent', 'do not compress more than'),    # everything agrees: a 128 MiB tensor of zeros, deflated
])
def test_zip_bomb_is_refused_before_inflating(tmp_path, monkeypatch, mini, kind, says):
    "A storage that would inflate past what its tensors need, or far past the file, is refused unread: fast, in little memory."
    import tracemalloc
    path = tmp_path / f'{kind}.pt'
    if kind == 'mini': _bombed_mini(mini, path)
    else: _forged_archive(path, monkeypatch, numel={'declared': 12}.get(kind, BOMB // 4),
                          size=(BOMB // 4,) if kind == 'consistent' else (12,), entry_bytes=BOMB)
    before = path.with_suffix('.orig').stat().st_size if kind == 'mini' else 0
    assert path.stat().st_size < before + BOMB // 256        # the bomb adds well under 1 MiB to the file
    tracemalloc.start()
    start = time.perf_counter()
    try:
        msg = _refused(lambda: read_torchscript_weights(path), path, 'data/0')
        if kind == 'mini': _refused(lambda: load(path, device='cpu'), path, 'data/0')   # what predict calls
        took, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally: tracemalloc.stop()
    assert says in msg and ('zip bomb' in msg or 'forged' in msg), msg
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB allocated while refusing"
    assert took < 10, f"{took:.1f} s to refuse"


def test_compressed_archive_and_views_still_read(tmp_path, mini):
    "The neighbours of the refusals: a deflated copy of a real archive, and a buffer that views part of a larger tensor."
    from clip_annotated.torchscript import save_traced
    from clip_annotated.tokenizer import tokenize
    save_traced(mini, tmp_path / 'a.pt', torch.randn(1, 3, 48, 48), tokenize(['a cat'], context_length=32))
    with zipfile.ZipFile(tmp_path / 'a.pt') as src, zipfile.ZipFile(tmp_path / 'z.pt', 'w', zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist(): dst.writestr(item.filename, src.read(item))
    sd = read_torchscript_weights(tmp_path / 'z.pt')
    assert sd.keys() == mini.state_dict().keys() and all(torch.equal(sd[k], v) for k, v in mini.state_dict().items())
    class Viewing(torch.nn.Module):
        def __init__(self):
            super().__init__(); self.register_buffer('part', torch.arange(1000.)[10:20])
        def forward(self, x): return x + self.part.sum()
    torch.jit.trace(Viewing(), torch.ones(2)).save(str(tmp_path / 'v.pt'))   # saves all 1000 floats for 10
    assert torch.equal(read_torchscript_weights(tmp_path / 'v.pt')['part'], torch.arange(10., 20.))


# ------------------------------------------------------------------ state dicts whose shapes describe no CLIP

@pytest.mark.parametrize('key, bad, says', [
    ('ln_final.weight', torch.ones(7), 'a text width of 7 leaves no attention heads'),
    ('ln_final.weight', torch.ones(128, 1), 'expected a 1-dimensional tensor'),
    ('text_projection', torch.ones(128), 'expected a 2-dimensional tensor'),
    ('positional_embedding', torch.ones(0, 128), 'expected a 2-dimensional tensor'),
    ('visual.conv1.weight', torch.ones(8, 3, 8, 8), 'a vision width of 8 leaves no attention heads'),
    ('visual.positional_embedding', torch.ones(37), 'expected a 2-dimensional tensor'),
    ('token_embedding.weight', torch.ones(10, 128), "10 rows disagree with the tokenizer's vocabulary of 49,408"),
])
def test_mis_shaped_width_defining_keys(tmp_path, mini, key, bad, says):
    sd = {**mini.state_dict(), key: bad}
    torch.save(sd, tmp_path / 'bad.pt')
    msg = _refused(lambda: load(tmp_path / 'bad.pt', device='cpu'), tmp_path / 'bad.pt', key, says)
    assert f'{key} has shape {list(bad.shape)}' in msg
    _refused(lambda: get_tokenizer(tmp_path / 'bad.pt'), tmp_path / 'bad.pt', key)


def test_resnet_width_too_small(tmp_path):
    sd = dict(create_model('MiniCLIP-RN').state_dict())
    sd['visual.layer1.0.conv1.weight'] = torch.ones(1, 16, 1, 1)
    torch.save(sd, tmp_path / 'rn.pt')
    _refused(lambda: load(tmp_path / 'rn.pt', device='cpu'), tmp_path / 'rn.pt', 'visual.layer1.0.conv1.weight')


def test_missing_and_mismatched_keys_still_name_the_file(tmp_path, mini):
    sd = {k: v for k, v in mini.state_dict().items() if k != 'ln_final.weight'}
    torch.save(sd, tmp_path / 'missing.pt')
    _refused(lambda: load(tmp_path / 'missing.pt', device='cpu'), tmp_path / 'missing.pt', 'ln_final.weight')
    sd = {**mini.state_dict(), 'token_embedding.weight': torch.ones(49408, 64)}          # disagrees about the width
    torch.save(sd, tmp_path / 'width.pt')
    _refused(lambda: load(tmp_path / 'width.pt', device='cpu'), tmp_path / 'width.pt', 'token_embedding.weight')
    sd = {**mini.state_dict(), 'token_embedding.weight': torch.ones(50000, 128)}         # more rows than ids: fine
    torch.save(sd, tmp_path / 'wide.pt')
    assert load(tmp_path / 'wide.pt', device='cpu')[0].vocab_size == 50000


def test_hf_and_open_clip_weights_are_checked_too(tmp_path, mini, hf_folder):
    from safetensors.torch import load_file, save_file
    folder = tmp_path / 'hf'
    shutil.copytree(hf_folder, folder)
    sd = load_file(folder / 'model.safetensors')
    sd['text_model.final_layer_norm.weight'] = torch.ones(7)
    save_file(sd, folder / 'model.safetensors')
    _refused(lambda: load(folder, device='cpu'), folder, 'ln_final.weight has shape [7]')
    oc = export_model(mini, tmp_path / 'oc', format='open_clip')
    save_file({**mini.state_dict(), 'token_embedding.weight': torch.ones(10, 128)}, oc / 'open_clip_model.safetensors')
    _refused(lambda: load(oc, device='cpu'), oc / 'open_clip_model.safetensors', 'token_embedding.weight')


# ------------------------------------------------------------------ downloads over loopback HTTP

class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    stop: threading.Event

    def do_GET(self):
        name = self.path.rsplit('/', 1)[-1]
        kind, _, file = name.partition('-')                  # '<kind>-<file>': how to serve <file>
        body = (self.root / file).read_bytes() if (self.root / file).is_file() else None
        if body is None: self.send_error(404); return
        self.send_response(200)
        if kind == 'plain': self.send_header('Content-Length', str(len(body)))
        if kind == 'badlength': self.send_header('Content-Length', 'twelve')
        if kind == 'trickle': self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        try:
            if kind in ('trickle', 'tricklenolength'):       # one byte every 0.5 s, until the client gives up
                for i in range(len(body)):
                    if self.stop.is_set(): return
                    self.wfile.write(body[i:i + 1]); self.wfile.flush()
                    self.stop.wait(0.5)
            else: self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError): pass
        self.close_connection = True

    def log_message(self, *args): pass


@pytest.fixture
def server(tmp_path, request):
    files = tmp_path / 'served'
    files.mkdir()
    handler = type('Handler', (_Handler,), {'root': files, 'stop': threading.Event()})
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()

    def stop():
        handler.stop.set(); httpd.shutdown(); httpd.server_close(); thread.join(timeout=5)
    request.addfinalizer(stop)
    return f'http://127.0.0.1:{httpd.server_address[1]}', files


def _publish(files: Path, name: str, body: bytes) -> str:
    (files / name).write_bytes(body)
    return hashlib.sha256(body).hexdigest()


def _no_parts(root: Path):
    parts = [p.name for p in root.iterdir() if p.name.endswith('.part')] if root.exists() else []
    assert parts == [], f"left behind: {parts}"


@pytest.mark.parametrize('kind', ['trickle', 'tricklenolength'])
def test_deadline_stops_a_trickling_server(server, tmp_path, kind):
    base, files = server
    old, new = b'the version that was there before' * 10, b'n' * 1000
    sha_new = _publish(files, 'model.pt', new)
    root = tmp_path / 'cache'
    root.mkdir()
    (root / f'{kind}-model.pt').write_bytes(old)                       # a previous file at the destination
    (root / 'other.pt').write_bytes(old)                               # and another good file in the cache
    url = f'{base}/{sha_new}/{kind}-model.pt'
    with pytest.warns(UserWarning, match='does not have SHA256'), pytest.raises(DownloadError) as e:
        download(url, root, progress=False, deadline=1.0)
    msg = str(e.value)
    assert url in msg and 'deadline of 1 s' in msg and 'bytes' in msg and 'place it at' in msg, msg
    assert ('of 1,000' in msg) == (kind == 'trickle'), msg
    assert (root / f'{kind}-model.pt').read_bytes() == old and (root / 'other.pt').read_bytes() == old
    _no_parts(root)


@pytest.mark.parametrize('length', ['badlength', 'nolength'])
def test_content_length_not_a_number_is_an_unknown_size(server, tmp_path, length):
    base, files = server
    body = os.urandom(5000)
    sha = _publish(files, 'model.pt', body)
    path = download(f'{base}/{sha}/{length}-model.pt', tmp_path / 'cache', progress=False)
    assert Path(path).read_bytes() == body
    _no_parts(tmp_path / 'cache')
    # and a wrong hash is still caught, without a length to compare with
    with pytest.raises(DownloadError, match='arrived with SHA256'):
        download(f'{base}/{"ab" * 32}/{length}-model.pt', tmp_path / 'cache2', progress=False)
    _no_parts(tmp_path / 'cache2')


def test_stale_part_files_are_cleaned(server, tmp_path):
    base, files = server
    body = os.urandom(3000)
    sha = _publish(files, 'model.pt', body)
    root = tmp_path / 'cache'
    root.mkdir()
    hour_ago = time.time() - 3600
    killed = root / '.plain-model.pt.k1ll3d.part'                      # left by a download killed an hour ago
    live = root / '.plain-model.pt.l1v3.part'                          # being written right now by another download
    other = root / '.another.pt.k1ll3d.part'                           # some other file's business
    for p in (killed, live, other): p.write_bytes(b'half a file')
    for p in (killed, other): os.utime(p, (hour_ago, hour_ago))
    path = download(f'{base}/{sha}/plain-model.pt', root, progress=False)
    assert Path(path).read_bytes() == body
    assert not killed.exists() and live.exists() and other.exists()
    # a download that completes also removes what went stale meanwhile
    os.utime(live, (hour_ago, hour_ago))
    Path(path).unlink()
    download(f'{base}/{sha}/plain-model.pt', root, progress=False)
    assert sorted(p.name for p in root.iterdir()) == ['.another.pt.k1ll3d.part', 'plain-model.pt']


def test_failed_download_also_cleans_stale_parts(server, tmp_path):
    base, files = server
    _publish(files, 'model.pt', b'x' * 100)
    root = tmp_path / 'cache'
    root.mkdir()
    killed = root / '.plain-model.pt.k1ll3d.part'
    killed.write_bytes(b'half')
    os.utime(killed, (time.time() - 3600,) * 2)
    with pytest.raises(DownloadError, match='arrived with SHA256'):
        download(f'{base}/{"cd" * 32}/plain-model.pt', root, progress=False)
    assert list(root.iterdir()) == []


def test_cache_root_honours_the_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv('CLIP_ANNOTATED_CACHE', str(tmp_path / 'env-cache'))
    assert cache_root() == tmp_path / 'env-cache'
    base, files = server
    body = b'weights' * 100
    sha = _publish(files, 'model.pt', body)
    path = download(f'{base}/{sha}/plain-model.pt', progress=False)      # no root: the environment's
    assert Path(path) == tmp_path / 'env-cache' / 'plain-model.pt' and Path(path).read_bytes() == body
    monkeypatch.setenv('CLIP_ANNOTATED_CACHE', '')                       # empty: as if unset
    assert cache_root() == Path('~/.cache/clip_annotated').expanduser()
    monkeypatch.delenv('CLIP_ANNOTATED_CACHE')
    assert cache_root() == Path('~/.cache/clip_annotated').expanduser()


# ------------------------------------------------------------------ #26 item 12: what a download is told, and a kill

def test_sha256_that_is_not_one_is_refused_up_front(server, tmp_path):
    base, files = server
    _publish(files, 'model.pt', b'x' * 100)
    for bad in ('xyz', 'ab' * 31, 'g' * 64, ''):
        with pytest.raises(ValueError) as e:
            download(f'{base}/plain-model.pt', tmp_path / 'cache', sha256=bad, progress=False)
        assert f"sha256={bad!r} for {base}/plain-model.pt is not a SHA256: expected 64 hexadecimal digits" in str(e.value)
    assert not (tmp_path / 'cache').exists()                                   # refused before anything was made


@pytest.mark.parametrize('tail', ['/', '/.', '/..'])
def test_url_without_a_file_name_is_refused(server, tmp_path, tail):
    "Without the check the cache folder itself became the downloaded file."
    base, _ = server
    root = tmp_path / 'cache'
    with pytest.raises(ValueError, match=r'names no file \(its path ends in'):
        download(f'{base}/{"ab" * 32}{tail}', root, progress=False)
    assert not root.exists() and sorted(p.name for p in tmp_path.iterdir()) == ['served']


@pytest.mark.parametrize('how', ['SIGINT', 'SIGTERM'])
def test_killed_download_removes_its_part_file_at_once(server, tmp_path, how):
    "Ctrl-C or a plain kill in the middle of a transfer: no .part file is left for a later download to find."
    import signal, subprocess, sys
    from conftest import child_env
    base, files = server
    sha = _publish(files, 'model.pt', b'n' * 1000)
    root = tmp_path / 'cache'
    code = ("import signal, sys; from clip_annotated.checkpoints import download\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"   # as in a terminal: a shell's background job ignores it
            "try: download(sys.argv[1], sys.argv[2], progress=False)\n"
            "except KeyboardInterrupt: sys.exit(130)\n")
    p = subprocess.Popen([sys.executable, '-c', code, f'{base}/{sha}/trickle-model.pt', str(root)], env=child_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (root.exists() and any(q.name.endswith('.part') for q in root.iterdir())):
            assert p.poll() is None and time.time() < deadline, p.communicate()
            time.sleep(0.05)
        p.send_signal(getattr(signal, how))
        _, err = p.communicate(timeout=120)                 # a loaded CI machine may take a while to exit
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == 130, err
    _no_parts(root)
    assert list(root.iterdir()) == []
