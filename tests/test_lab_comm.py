"""The comm protocol between nbtune in a real ipykernel and the JupyterLab extension, driven from Python."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

from nbtune import templates
from nbtune._events import SearchInfo
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.lab._comm import LabListener, LabSession
from nbtune.trial._records import TrialRecord

SLOW_CELL = "import time\nx = 0.5  # tune: uniform(0, 1)\ntime.sleep(0.1)\nloss = (x - 0.3) ** 2\n"


class Kernel:
    """A kernel client that keeps every iopub message, so comm traffic and cell output can both be read."""

    def __init__(self, client: Any) -> None:
        self.kc = client
        self.log: list[dict[str, Any]] = []

    def pump(self, until: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            assert left > 0, "timed out waiting for the kernel"
            try:
                self.log.append(self.kc.get_iopub_msg(timeout=min(left, 1)))
            except Exception:  # queue.Empty: nothing yet
                continue

    def execute(self, code: str, **kwargs: Any) -> dict[str, Any]:
        msg_id = self.kc.execute(code, **kwargs)
        reply = self.kc.get_shell_msg(timeout=120)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=120)
        # the cell's iopub traffic ends with status idle for that request
        self.pump(lambda: any(_idle_after(m, msg_id) for m in self.log))
        return dict(reply["content"])

    def open_comm(self, data: dict[str, Any]) -> str:
        comm_id = uuid.uuid4().hex
        self.kc.shell_channel.send(
            self.kc.session.msg("comm_open", {"comm_id": comm_id, "target_name": "nbtune", "data": data})
        )
        return comm_id

    def send(self, comm_id: str, data: dict[str, Any]) -> None:
        self.kc.shell_channel.send(self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data}))

    def comm_data(self, comm_id: str) -> list[dict[str, Any]]:
        return [
            m["content"]["data"] for m in self.log if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
        ]

    def closed(self, comm_id: str) -> bool:
        return any(m["msg_type"] == "comm_close" and m["content"]["comm_id"] == comm_id for m in self.log)

    def reply(self, comm_id: str, request_id: int) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def arrived() -> bool:
            found[:] = [d for d in self.comm_data(comm_id) if d.get("id") == request_id]
            return bool(found)

        self.pump(arrived)
        return found[0]


def _idle_after(msg: dict[str, Any], msg_id: str) -> bool:
    return (
        msg["msg_type"] == "status"
        and msg["content"]["execution_state"] == "idle"
        and msg["parent_header"].get("msg_id") == msg_id
    )


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    cwd: Path = tmp_path_factory.mktemp("kernel")
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(cwd))
    try:
        yield Kernel(kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.fixture
def nbtune_comm(kernel: Kernel) -> str:
    """A comm to nbtune in the kernel (loading nbtune first if needed)."""
    assert kernel.execute("%load_ext nbtune")["status"] == "ok"
    comm_id = kernel.open_comm({"request": "hello"})
    kernel.pump(lambda: bool(kernel.comm_data(comm_id)))
    return comm_id


def test_the_comm_target_exists_only_once_nbtune_is_loaded(kernel):
    refused = kernel.open_comm({"request": "hello"})
    kernel.pump(lambda: kernel.closed(refused))
    assert kernel.comm_data(refused) == []

    assert kernel.execute("%load_ext nbtune")["status"] == "ok"
    accepted = kernel.open_comm({"request": "hello"})
    kernel.pump(lambda: bool(kernel.comm_data(accepted)))
    (hello,) = kernel.comm_data(accepted)
    assert hello["reply"] == "hello" and hello["protocol"] == 1 and isinstance(hello["searches"], list)
    assert not kernel.closed(accepted)


def test_templates_come_from_the_kernels_nbtune(kernel, nbtune_comm):
    kernel.send(nbtune_comm, {"request": "templates", "id": 1})
    reply = kernel.reply(nbtune_comm, 1)
    assert [t["name"] for t in reply["templates"]] == templates.names()
    for t in reply["templates"]:
        assert t["text"] == templates.get(t["name"]) and t["description"] == templates.describe(t["name"])
        assert t["text"].startswith("%%tune")


def test_annotation_errors_are_word_for_word_what_the_magic_says(kernel, nbtune_comm):
    cell = "%%tune --no-mlflow --quiet\nlr = 0.1  # tune: loguniform(1e-4, 1)\nx = 1  # tune: gaussian(0, 1)\nloss = x"
    kernel.send(nbtune_comm, {"request": "annotations", "id": 2, "source": cell})
    reply = kernel.reply(nbtune_comm, 2)
    ok, bad = reply["annotations"]
    assert (ok["line"], ok["name"], ok["reading"]) == (2, "lr", "lr: loguniform(lo=0.0001, hi=1)")
    assert (bad["line"], bad["name"]) == (3, "x") and "reading" not in bad

    ran = kernel.execute(cell)
    assert ran["status"] == "error" and ran["ename"] == "UsageError"
    assert bad["message"] == ran["evalue"] == reply["cell_error"]
    assert bad["message"].startswith("line 3: unknown distribution 'gaussian'")


def test_a_search_is_pushed_to_the_panel_while_it_runs_and_kept_for_later(kernel, nbtune_comm):
    ran = kernel.execute(f"%%tune --max-evals 6 --backend local --no-mlflow --quiet --seed 1\n{SLOW_CELL}")
    assert ran["status"] == "ok"
    updates = [d["search"] for d in kernel.comm_data(nbtune_comm) if d.get("event") == "search"]
    assert updates, "no search update reached the comm"
    ids = {u["id"] for u in updates}
    assert len(ids) == 1
    first, last = updates[0], updates[-1]
    assert first["status"] == "running" and not first["finished"] and first["total"] == 6
    assert [u["done"] for u in updates] == sorted(u["done"] for u in updates)
    assert any(0 < u["done"] < 6 for u in updates), "no update while trials were running"
    assert last["finished"] and last["status"] == "completed"
    assert (last["done"], last["ok"], last["failed"], last["running"]) == (6, 6, 0, 0)
    assert last["metric"] == "loss" and last["mode"] == "min" and set(last["best_params"]) == {"x"}
    best = kernel.execute("", user_expressions={"best": "_tune.best_value"})["user_expressions"]["best"]
    assert float(best["data"]["text/plain"]) == pytest.approx(last["best"])

    later = kernel.open_comm({"request": "hello"})
    kernel.pump(lambda: bool(kernel.comm_data(later)))
    (hello,) = kernel.comm_data(later)
    assert hello["searches"][-1] == {**last, "elapsed": hello["searches"][-1]["elapsed"]}


def test_a_bad_request_gets_an_error_reply_and_the_kernel_goes_on(kernel, nbtune_comm):
    kernel.send(nbtune_comm, {"request": "frobnicate", "id": 9})
    assert kernel.reply(nbtune_comm, 9)["error"] == "ValueError: unknown request 'frobnicate'"
    assert kernel.execute("y = 40 + 2")["status"] == "ok"


class RecordingComm:
    """Stands in for a kernel comm: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, data: dict[str, Any]) -> None:
        self.sent.append(data)


def test_updates_are_throttled_but_the_final_state_is_always_sent():
    session = LabSession()
    comm = RecordingComm()
    session.comms.append(comm)
    options = TuneOptions().replace(max_evals=50, metric="loss")
    result = TuneResult("loss", "min", ["x"], max_evals=50)
    listener = LabListener(session, interval=60)
    listener.search_started(SearchInfo("s", options, "local", 1, ["x"]), result)
    for n in range(50):
        listener.trial_started(n, {"x": n})
        record = TrialRecord(number=n, tid=n, params={"x": n}, status="ok", value=float(50 - n))
        result.records.append(record)
        listener.trial_finished(record)
        listener.poll()
    result.stop_reason = "completed"
    listener.search_finished(result)
    assert len(comm.sent) == 2  # the start and the end; everything between waited for the interval
    final = comm.sent[-1]["search"]
    assert final["done"] == 50 and final["best"] == 1.0 and final["best_params"] == {"x": 49} and final["finished"]


def test_a_snapshot_counts_pruned_trials_beside_the_other_statuses():
    session = LabSession()
    comm = RecordingComm()
    session.comms.append(comm)
    options = TuneOptions().replace(max_evals=3, metric="loss", prune="asha")
    result = TuneResult("loss", "min", ["x"], max_evals=3)
    listener = LabListener(session, interval=0)
    listener.search_started(SearchInfo("s", options, "local", 1, ["x"]), result)
    for n, status in enumerate(["ok", "pruned", "pruned"]):
        listener.trial_started(n, {"x": n})
        record = TrialRecord(number=n, tid=n, params={"x": n}, status=status, value=float(n + 1), step=n + 1)
        result.records.append(record)
        listener.trial_finished(record)
    result.stop_reason = "completed"
    listener.search_finished(result)
    final = comm.sent[-1]["search"]
    assert (final["done"], final["ok"], final["pruned"], final["failed"], final["cancelled"]) == (3, 1, 2, 0, 0)
    assert final["best"] == 1.0  # a pruned trial's value is a partial result, never the best
