"""Speed figures of the workbench on the shipped model (printed, not asserted).

    python scripts/bench_app.py

- cold start: seconds from `python app.py` to the first HTTP 200 (model, world, UI built);
- slider latency: one playground comparison at the shipped strength (original + steered answer,
  the work a slider move triggers), median over repeats, and its ratio to one unsteered answer;
- steering overhead: one forward pass over the prompt with the eraser's hooks against one
  without (ratio). Whole answers are not compared: steering changes their length;
- the activation map: the first draw (collecting the fit sets' activations), UMAP's numba
  compilation (what the app does in the background at start-up), the first UMAP view of a layer
  and a redraw with another input star (the fitted map is kept).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    from browser import AppServer
    t = time.perf_counter()
    server = AppServer().wait(300)
    cold = time.perf_counter() - t
    server.stop()

    import torch
    torch.set_num_threads(2)
    from app.workbench import Workbench
    wb = Workbench.load()
    person = wb.world.forget_people(wb.eraser_split)[0]
    img, q = wb.world.canonical_image(person), "What is this person's occupation?"
    batch = wb.adapter.encode([q], [img])
    plain = _median_seconds(lambda: wb.adapter.generate(batch, 40), 10)

    def steered_forward():
        with torch.no_grad(), wb.eraser.apply(wb.adapter, strength=1.0):
            wb.adapter.logits(batch)

    def plain_forward():
        with torch.no_grad():
            wb.adapter.logits(batch)

    steer = _median_seconds(steered_forward, 20) / _median_seconds(plain_forward, 20)
    strength = wb.eraser.config.strength
    compare = _median_seconds(lambda: wb.compare(img, q, strength, None), 10)
    print(f"cold start (python app.py -> HTTP 200): {cold:.1f} s")
    print(f"slider move at strength {strength} (original + steered answer): {1000 * compare:.0f} ms median "
          f"= {compare / plain:.2f} x one unsteered answer ({1000 * plain:.0f} ms)")
    print(f"steering overhead: forward pass with / without the eraser's hooks = {steer:.2f}")

    from core.projection import warm_umap
    layer = wb.eraser.fitted_layers[-1]
    first_map = _seconds(lambda: wb.activation_map(wb.eraser, layer, "PCA"))
    jit = _seconds(warm_umap)
    first_umap = _seconds(lambda: wb.activation_map(wb.eraser, layer, "UMAP", img, q))
    redraw = _seconds(lambda: wb.activation_map(wb.eraser, layer, "UMAP", img, "Where was this person born?"))
    print(f"activation map: first draw {first_map:.1f} s (collects the fit sets once), UMAP compilation "
          f"{jit:.1f} s (background, at start-up), first UMAP view of a layer {first_umap:.1f} s, "
          f"redraw with another input {redraw:.2f} s")


if __name__ == "__main__":
    main()
