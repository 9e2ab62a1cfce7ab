"""Jobs of the app: one stop flag per job, a time limit, errors logged with a reference."""
import logging
import time

import gradio as gr
import pytest

from app.jobs import Job, Jobs, logged


def test_stop_ends_only_that_sessions_jobs_of_that_kind():
    jobs = Jobs()
    pgd_a, eval_a, pgd_b = jobs.start("a", "pgd"), jobs.start("a", "eval"), jobs.start("b", "pgd")
    assert jobs.stop("a", "pgd") == 1
    assert pgd_a.should_stop() and not eval_a.should_stop() and not pgd_b.should_stop()
    assert "you pressed Stop" in pgd_a.stopped_message()
    jobs.finish("a", pgd_a)
    assert jobs.running("a", "pgd") == 0 and jobs.running("a", "eval") == 1
    again = jobs.start("a", "pgd")  # a new run starts with its own, unset flag
    assert not again.should_stop()
    assert jobs.stop("nobody", "pgd") == 0


def test_a_job_stops_at_its_time_limit_and_says_so():
    job = Job("eval", seconds=0.05)
    assert not job.should_stop()
    time.sleep(0.1)
    assert job.should_stop() and job.timed_out
    assert "time limit of 0.05 s" in job.stopped_message("The previous eraser is still in use.")


def test_unexpected_errors_are_logged_and_shown_as_a_sentence(caplog):
    @logged
    def broken(x):
        raise KeyError(x)

    @logged
    def broken_stream(x):
        yield x
        raise RuntimeError("deep inside")

    @logged
    def fine(x, progress=gr.Progress()):
        return x + 1

    with caplog.at_level(logging.ERROR, logger="mllmeraser.app"):
        with pytest.raises(gr.Error, match=r"KeyError, reference [0-9a-f]{8}\); it was logged") as err:
            broken("k")
        gen = broken_stream(1)
        assert next(gen) == 1
        with pytest.raises(gr.Error, match="RuntimeError"):
            next(gen)
    ref = str(err.value).split("reference ")[1][:8]
    assert any(ref in r.getMessage() and r.exc_info for r in caplog.records)  # the traceback is in the log
    assert fine(1) == 2
    import inspect
    assert "progress" in inspect.signature(fine).parameters  # Gradio still sees its progress argument


def test_stop_pressed_while_the_job_waits_in_the_queue_stops_it_when_it_starts():
    """A queued job registers only when it starts, so Stop found nothing and was lost; the job
    then ran to its time limit. Kept for that session's next job of that kind while the slot is
    busy; with the slot free the click is dropped, so it never stops a later run."""
    jobs = Jobs()
    other = jobs.start("s1", "heatmap")  # another visitor's job holds the slot
    assert jobs.stop("s2", "heatmap") == 0
    mine = jobs.start("s2", "heatmap")
    assert mine.should_stop() and "you pressed Stop" in mine.stopped_message()
    assert not other.should_stop() and not jobs.start("s2", "pgd").should_stop()  # other sessions and kinds
    jobs.finish("s2", mine)
    again = jobs.start("s2", "heatmap")  # the stop was used once
    assert not again.should_stop()
    idle = Jobs()
    assert idle.stop("s3", "heatmap") == 0  # nothing running anywhere: nothing to keep
    assert not idle.start("s3", "heatmap").should_stop()
    # a click that raced the end of this session's own job (another visitor's job holding the slot) is a
    # late click on that job: it stopped the next run
    raced = Jobs()
    done = raced.start("a", "heatmap")
    raced.finish("a", done)
    busy = raced.start("b", "fit")
    assert raced.stop("a", "heatmap") == 0
    raced.finish("b", busy)
    assert not raced.start("a", "heatmap").should_stop()


def test_a_stop_with_nothing_queued_does_not_stop_a_later_run():
    """Kept whenever another visitor's job held the slot, a stray Stop (this session had nothing of
    that kind queued) stopped this session's next run of that kind, up to JOB_SECONDS later. It is
    kept now only while the jobs that held the slot at the click, and those that took it after them
    without a pause, run: a job queued behind them starts then."""
    jobs = Jobs()
    other = jobs.start("s1", "fit")
    assert jobs.stop("s2", "pgd") == 0
    jobs.finish("s1", other)
    other.ended -= 60  # a minute later, with the slot free since: a new run, not the queued one
    assert not jobs.start("s2", "pgd").should_stop()
    # queued behind two jobs in turn: the stop follows the queue and stops it when it starts
    q = Jobs()
    first = q.start("s1", "fit")
    assert q.stop("s2", "fit") == 0
    q.finish("s1", first)
    second = q.start("s3", "map")  # took the slot at once: s2's fit still waits
    first.ended -= 60
    q.finish("s3", second)
    assert q.start("s2", "fit").should_stop()
