"""The TransformerLens bridge: collected activations as an ActivationCache under the same names."""
import subprocess

import pytest
import torch

from conftest import random_image, tiny_adapter
from core.activations import Prompt, collect, site_name
from core.lens import activation_cache, from_activation_cache, no_installs


def test_cache_holds_the_collected_activations_under_transformer_lens_names():
    a = tiny_adapter("llava")
    prompts = [Prompt("what is this ?", random_image(0)), Prompt("who is this ?", random_image(1)),
               Prompt("name a colour", None)]
    cache = activation_cache(a, prompts, position="mean")
    ours = collect(a, prompts, position="mean")
    assert list(cache.keys()) == [site_name(l) for l in range(a.num_layers)]
    for l in range(a.num_layers):
        assert torch.equal(cache[f"blocks.{l}.hook_resid_pre"], ours[:, l])
    one = cache.apply_slice_to_batch_dim(slice(0, 1))
    assert one[site_name(0)].shape == (1, a.hidden_size)
    assert torch.equal(from_activation_cache(cache, [0, 1]), ours[:, :2])
    with pytest.raises(KeyError, match="names_filter"):
        from_activation_cache(activation_cache(a, prompts, layers=[1]), [0, 1])


def test_all_positions_of_one_batch_with_its_attention_mask():
    a = tiny_adapter("llava")
    prompts = [Prompt("what is this ?", random_image(0)), Prompt("who is the person in this picture ?",
                                                                 random_image(1))]
    cache = activation_cache(a, prompts, layers=[1], position="all")
    h = cache[site_name(1)]
    assert h.ndim == 3 and h.shape[0] == 2 and h.shape[1] == cache.attention_mask.shape[1]
    last = collect(a, prompts, [1], position="last")[:, 0]
    assert torch.allclose(h[:, -1], last, atol=1e-5)  # left padding: the last column is the last prompt token
    with pytest.raises(ValueError, match="all have an image"):
        activation_cache(a, prompts + [Prompt("text only", None)], position="all")


def test_all_positions_read_the_prompts_that_last_reads_turns_prefills_and_tensor_pictures():
    """position "all" encoded the question alone: a later turn lost its history and prefill (25 of 36
    tokens), and a picture given as a tensor (a PGD image) raised a TypeError."""
    a = tiny_adapter("llava")
    prompts = [Prompt("who is this ?", a.to_pixels(random_image(0)), history=(("what is this ?", "a face"),),
                      prefill="it is"),
               Prompt("and this one ?", random_image(1))]
    cache = activation_cache(a, prompts, layers=[1], position="all")
    last = collect(a, prompts, [1], position="last")[:, 0]
    assert torch.allclose(cache[site_name(1)][:, -1], last, atol=1e-5)
    assert int(cache.attention_mask[0].sum()) > int(cache.attention_mask[1].sum())  # the turns are read


def test_installs_are_refused_inside_the_guard():
    with no_installs():
        with pytest.raises(RuntimeError, match="refused"):
            subprocess.check_call(["pip", "install", "torchvision"])
    assert subprocess.check_call(["true"]) == 0  # restored afterwards
