"""Several appenders at once, threads and processes, on both databases: no seq is lost or repeated."""

from __future__ import annotations

import multiprocessing
import threading

from retention.ledger import Ledger, migrate

WORKERS, PER_WORKER = 4, 25


def _append_many(url: str, worker: int) -> None:
    with Ledger.open(url) as ledger:
        for i in range(PER_WORKER):
            ledger.append("test.concurrent", {"worker": worker, "i": i}, actor=f"worker:{worker}")


def _assert_complete_chain(url: str) -> None:
    with Ledger.open(url) as ledger:
        events = list(ledger.events())
        result = ledger.verify()
        assert result.ok, result.reason
        assert result.events_checked == WORKERS * PER_WORKER
        assert [e.seq for e in events] == list(range(1, WORKERS * PER_WORKER + 1))
        assert ledger.head() == (len(events), events[-1].hash)
        # Every worker's appends all landed, in that worker's own order.
        for w in range(WORKERS):
            assert [e.payload["i"] for e in events if e.payload["worker"] == w] == list(range(PER_WORKER))


def test_appenders_in_separate_processes_serialize_on_the_chain_head(ledger_url: str) -> None:
    migrate(ledger_url)
    ctx = multiprocessing.get_context("spawn")  # a clean interpreter per worker, like Airflow's
    procs = [ctx.Process(target=_append_many, args=(ledger_url, w)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    _assert_complete_chain(ledger_url)


def test_threads_sharing_one_ledger_serialize_on_the_chain_head(ledger: Ledger) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(WORKERS)

    def work(worker: int) -> None:
        try:
            start.wait()
            for i in range(PER_WORKER):
                ledger.append("test.concurrent", {"worker": worker, "i": i}, actor=f"worker:{worker}")
        except BaseException as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    _assert_complete_chain(str(ledger.engine.url.render_as_string(hide_password=False)))
