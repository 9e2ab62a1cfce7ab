"""Family adapters: what one family needs beyond the base adapter."""
import threading

import pytest
import torch

from conftest import random_image, tiny_adapter


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_two_requests_generating_at_once_on_qwen_keep_their_own_positions(family):
    """Qwen2-VL keeps the M-RoPE offsets of the prompt it last read on the model (`rope_deltas`).
    Generation takes its positions from them only when it continues a cache, so two threads
    generating at once (batches of different padding and pictures) still get their serial
    scores at every step. A guard: a transformers release that read the shared offsets at each
    decode step would mix two users' positions."""
    a = tiny_adapter(family)
    long = a.encode(["what is this ?", "who is the person in this picture please ?"], [random_image(0), random_image(1)])
    short = a.encode(["how many ?"], [random_image(2)])

    def scores(batch) -> torch.Tensor:
        with torch.no_grad():
            out = a.model.generate(**batch.inputs, max_new_tokens=6, do_sample=False, num_beams=1, use_cache=True,
                                   pad_token_id=a.tokenizer.pad_token_id, output_scores=True,
                                   return_dict_in_generate=True)
        return torch.stack(out.scores)
    want = {id(long): scores(long), id(short): scores(short)}
    wrong, errors = [], []

    def run(batch):
        try:
            for _ in range(15):
                if not torch.allclose(scores(batch), want[id(batch)], atol=1e-5):
                    wrong.append(1)
        except Exception as e:  # noqa: BLE001 - any failure is the defect under test
            errors.append(repr(e))
    threads = [threading.Thread(target=run, args=(b,)) for b in (long, short)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong == []
