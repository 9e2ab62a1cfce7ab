"""Speed figures of the workbench on the shipped model (printed, not asserted).

    python scripts/bench_app.py

- cold start: seconds from `python app.py` to the first HTTP 200 (model, world, UI built);
- slider latency: one playground comparison (original + steered answer, the work a slider move
  triggers), median over repeats, and its ratio to a single unsteered answer;
- steering overhead: a steered answer against an unsteered one (ratio).
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

    def steered():
        with wb.eraser.apply(wb.adapter, strength=1.0):
            wb.adapter.generate(batch, 40)

    steer = _median_seconds(steered, 10)
    compare = _median_seconds(lambda: wb.compare(img, q, 1.0, None), 10)
    print(f"cold start (python app.py -> HTTP 200): {cold:.1f} s")
    print(f"slider move (original + steered answer): {1000 * compare:.0f} ms median "
          f"= {compare / plain:.2f} x one unsteered answer ({1000 * plain:.0f} ms)")
    print(f"steering overhead: steered / unsteered answer = {steer / plain:.2f}")


if __name__ == "__main__":
    main()
