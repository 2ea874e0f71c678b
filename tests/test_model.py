"""Gradient checkpointing (`CLIP.set_grad_checkpointing`, `--grad-checkpointing`): the same gradients in less memory.

* With and without it, a ViT CLIP and a ResNet CLIP give the same loss and the same gradient in every parameter.
* `torch.utils.checkpoint.checkpoint` really runs: once per Transformer block of both towers (a ResNet image
  tower keeps its activations, so only the text tower's blocks), and not at all without gradients.
* On a GPU, the peak memory of a forward and backward pass drops (skipped without CUDA).
* Training with `grad_checkpointing=True` checkpoints, ends with the weights of a run without it, and the option may
  change on resume (it is in `FREE_ON_RESUME`).
"""
from __future__ import annotations

import contextlib, io
from dataclasses import asdict, replace
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from clip_annotated.model import create_model
from clip_annotated.tokenizer import tokenize
from clip_annotated.runfolder import load_checkpoint
from clip_annotated.train import FREE_ON_RESUME, PRESETS, config_changes, train

TINY_MODEL = dict(embed_dim=16, vision_layers=1, vision_width=64, transformer_width=64, transformer_heads=1,
                  transformer_layers=1)
TINY = replace(PRESETS['scenes-tiny'], model_overrides=TINY_MODEL, n_scenes=64, batch_size=16, steps=3, warmup=1,
               ckpt_every=3, eval_every=0, progress=False, threads=1)


def _batch(model, n: int, device='cpu'):
    res, ctx = model.visual.input_resolution, model.context_length
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, res, res, generator=g).to(device)
    texts = tokenize([f'a photo of {i} cats' for i in range(n)], context_length=ctx).to(device)
    return images, texts


def _loss(model, images, texts):
    logits, _ = model(images, texts)
    labels = torch.arange(len(images), device=images.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _grads(model, images, texts) -> tuple[float, dict]:
    model.zero_grad(set_to_none=True)
    loss = _loss(model, images, texts)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _counting():
    return mock.patch('torch.utils.checkpoint.checkpoint', wraps=torch.utils.checkpoint.checkpoint)


@pytest.mark.parametrize('name', ['MiniCLIP', 'MiniCLIP-RN'])
def test_same_gradients_and_one_checkpoint_per_block(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    with torch.no_grad():
        for p in model.parameters(): p.add_(0.02 * torch.randn_like(p))      # away from the zero-initialised gains
    images, texts = _batch(model, 6)
    loss, grads = _grads(model, images, texts)
    with _counting() as ckpt:
        loss_c, grads_c = _grads(model.set_grad_checkpointing(), images, texts)
    blocks = model.transformer.layers + (model.visual.transformer.layers if hasattr(model.visual, 'transformer') else 0)
    assert ckpt.call_count == blocks
    assert loss_c == pytest.approx(loss, abs=1e-6)
    assert grads.keys() == grads_c.keys()
    for n in grads: torch.testing.assert_close(grads_c[n], grads[n], rtol=1e-5, atol=1e-6, msg=n)
    with _counting() as ckpt, torch.no_grad(): model.encode_image(images), model.encode_text(texts)
    assert ckpt.call_count == 0                                              # nothing to save memory for
    model.set_grad_checkpointing(False)
    with _counting() as ckpt: _grads(model, images, texts)
    assert ckpt.call_count == 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='peak memory is measured on a CUDA device')
def test_checkpointing_lowers_peak_memory_on_gpu():
    torch.manual_seed(0)
    model = create_model('MiniCLIP').cuda().train()
    images, texts = _batch(model, 512, 'cuda')

    def peak(checkpointing: bool) -> int:
        model.set_grad_checkpointing(checkpointing); model.zero_grad(set_to_none=True)
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _loss(model, images, texts).backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    peak(False)                                                              # warm up the kernels and the allocator
    plain, checkpointed = peak(False), peak(True)
    print(f"peak memory of a backward pass, batch 512: {plain / 2**20:.0f} MiB, checkpointed {checkpointed / 2**20:.0f} MiB")
    assert checkpointed < 0.7 * plain, (plain, checkpointed)


def test_training_with_checkpointing_checkpoints_and_trains_the_same(tmp_path):
    quiet = lambda: contextlib.redirect_stdout(io.StringIO())
    with quiet(): train(replace(TINY, out=str(tmp_path / 'plain')))
    with quiet(), _counting() as ckpt: train(replace(TINY, out=str(tmp_path / 'ckpt'), grad_checkpointing=True))
    assert ckpt.call_count >= 2 * TINY.steps                                 # both towers' block, every step
    a, b = (load_checkpoint(tmp_path / run / 'checkpoint.pt')['model'] for run in ('plain', 'ckpt'))
    for n in a: torch.testing.assert_close(b[n], a[n], rtol=1e-5, atol=1e-6, msg=n)
    assert 'grad_checkpointing' in FREE_ON_RESUME
    assert config_changes(asdict(TINY), replace(TINY, grad_checkpointing=True)) == []
