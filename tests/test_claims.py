"""Claims and leases (O_EXCL files with a heartbeat), and the temporaries of dead writers swept away."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcsweep.claims import Claim, sweep_claims
from hpcsweep.cli import main
from hpcsweep.files import sweep_temporaries, temp_path
from hpcsweep.sweep.lease import driver_lease


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _plant(folder: Path, name: str, generation: int, host: str, pid: int, age_s: float = 0.0) -> Path:
    """A claim file as another process would have left it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.{generation}.claim"
    path.write_text(json.dumps({"host": host, "pid": pid, "job": f"local:{host}:{pid}", "start": time.time() - age_s}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_a_claim_is_held_by_one_and_released(tmp_path):
    first, second = Claim(tmp_path, "trial"), Claim(tmp_path, "trial")
    assert first.acquire() is None and first.held()
    holder = second.acquire()
    assert holder is not None and holder.pid == os.getpid() and holder.generation == 0
    first.release()
    assert not list(tmp_path.glob("*.claim"))
    assert second.acquire() is None and second.held()
    second.release()


def test_the_claim_of_a_dead_process_is_taken_over(tmp_path):
    pid = _dead_pid()
    stale = _plant(tmp_path, "trial", 3, socket.gethostname(), pid)
    claim = Claim(tmp_path, "trial")
    assert claim.acquire() is None
    assert claim.superseded is not None and claim.superseded.pid == pid
    assert claim.generation == 4 and not stale.exists() and claim.held()
    claim.release()


def test_another_hosts_claim_is_kept_while_its_heartbeat_is_fresh_and_taken_when_stale(tmp_path):
    _plant(tmp_path, "fresh", 0, "node-elsewhere", 12345, age_s=5)
    _plant(tmp_path, "stale", 0, "node-elsewhere", 12345, age_s=600)
    fresh, stale = Claim(tmp_path, "fresh", stale_after=300), Claim(tmp_path, "stale", stale_after=300)
    assert fresh.acquire().host == "node-elsewhere"
    assert stale.acquire() is None and stale.superseded.host == "node-elsewhere"
    stale.release()


def test_a_holder_that_was_superseded_knows_it_and_its_heartbeat_keeps_a_claim_fresh(tmp_path):
    claim = Claim(tmp_path, "trial", stale_after=0.5)  # a heartbeat every 0.05 s
    assert claim.acquire() is None
    path = tmp_path / "trial.0.claim"
    os.utime(path, (0, 0))
    time.sleep(0.3)
    assert time.time() - path.stat().st_mtime < 0.3, "the heartbeat touches the claim"
    _plant(tmp_path, "trial", 1, "node-elsewhere", 1)  # a process that thought this one dead
    assert not claim.held()
    claim.release()
    assert (tmp_path / "trial.1.claim").exists(), "a newer generation is left to its holder"


def test_an_unreadable_claim_is_taken_over_after_seconds_not_after_its_stale_time(tmp_path, monkeypatch):
    """A claim is linked into place whole, so an unreadable one is damaged (an empty file, as a full disk left one
    before): it holds only UNREADABLE_AFTER_S, never the ten minutes of a driver's stale time."""
    empty = tmp_path / "driver.0.claim"
    empty.write_text("")
    os.utime(empty, (time.time() - 10, time.time() - 10))
    claim = Claim(tmp_path, "driver", stale_after=600)
    began = time.time()
    assert claim.acquire() is None and claim.generation == 1 and time.time() - began < 1
    claim.release()
    monkeypatch.setattr("hpcsweep.claims.UNREADABLE_AFTER_S", 0.3)
    (tmp_path / "trial.0.claim").write_text("{")  # unreadable, and just written: a filesystem's lag is waited for
    claim = Claim(tmp_path, "trial", stale_after=600)
    began = time.time()
    assert claim.acquire() is None and claim.generation == 1 and time.time() - began >= 0.2
    claim.release()


def test_a_full_disk_never_leaves_an_empty_claim(tmp_path, monkeypatch):
    import errno

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match="No space left"):
        Claim(tmp_path, "driver").acquire()
    assert not list(tmp_path.iterdir()), "no claim, and no temporary"


def _race(folder: str, results) -> None:
    claim = Claim(Path(folder), "trial")
    won = claim.acquire() is None
    results.put((os.getpid(), won))
    time.sleep(0.5)  # hold it while the others look
    claim.release()


@pytest.mark.slow
def test_of_many_processes_taking_over_a_stale_claim_at_once_exactly_one_wins(tmp_path):
    _plant(tmp_path, "trial", 0, socket.gethostname(), _dead_pid())
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    racers = [context.Process(target=_race, args=(str(tmp_path), results)) for _ in range(8)]
    for racer in racers:
        racer.start()
    outcomes = [results.get(timeout=60) for _ in racers]
    for racer in racers:
        racer.join()
    assert sum(won for _, won in outcomes) == 1, outcomes


def test_sweeping_claims_removes_only_those_of_gone_holders(tmp_path):
    _plant(tmp_path, "dead", 0, socket.gethostname(), _dead_pid())
    _plant(tmp_path, "alive", 0, socket.gethostname(), os.getpid())
    assert sweep_claims(tmp_path, stale_after=300) == ["dead"]
    assert [p.name for p in tmp_path.glob("*.claim")] == ["alive.0.claim"]


def test_temporaries_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    target = tmp_path / "x.h5"
    mine = temp_path(target)
    mine.write_text("being written")
    dead = tmp_path / f".x.h5~{socket.gethostname()}~{_dead_pid()}.tmp"
    dead.mkdir()  # a cache folder being written is a temporary too
    (dead / "col.npy").write_text("half")
    old = tmp_path / ".y.h5~node-elsewhere~99.tmp"
    old.write_text("old")
    os.utime(old, (time.time() - 2 * 86_400,) * 2)
    young = tmp_path / ".z.h5~node-elsewhere~99.tmp"
    young.write_text("young")
    assert sorted(p.name for p in sweep_temporaries(tmp_path)) == sorted([dead.name, old.name])
    assert mine.exists() and young.exists() and not dead.exists() and not old.exists()


def test_a_second_driver_is_refused_naming_the_holder_and_a_dead_ones_lease_is_taken_over(tmp_path, capsys):
    sweep = tmp_path / "leased.yaml"
    sweep.write_text("name: leased\nmodel: {latent: 2}\n")
    results = tmp_path / "results"
    with driver_lease(results / "leased"):
        assert main(["sweep", str(sweep), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "is being run by another hpcsweep driver" in err and f"pid {os.getpid()}" in err and "--wait-for-lease" in err
    assert not (results / "leased").exists(), "a folder made only for the lease is removed again"

    _plant(results / "leased" / "claims", "driver", 0, socket.gethostname(), dead := _dead_pid())
    lines = []
    with driver_lease(results / "leased", log=lines.append):
        pass
    assert lines and f"pid {dead}" in lines[0] and "which is gone" in lines[0]


def test_a_results_path_that_is_a_file_is_refused_in_one_line(tmp_path, capsys):
    sweep = tmp_path / "blocked.yaml"
    sweep.write_text("name: blocked\nmodel: {latent: 2}\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "blocked").write_text("not a folder")
    (tmp_path / "file").write_text("not a folder either")
    assert main(["sweep", str(sweep), "--results", str(tmp_path / "results")]) == 2
    assert "is a file, not a results folder" in capsys.readouterr().err
    assert main(["sweep", str(sweep), "--results", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Not a directory" in err and "choose another --results" in err


@pytest.fixture
def read_only(tmp_path):
    """A read-only folder: a read-only tmpfs when root (root writes through permissions), else mode 0555."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True).returncode:
            pytest.skip("root, but mounting a tmpfs is not permitted here")
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_a_read_only_results_folder_is_refused_in_one_line(read_only, tmp_path, capsys):
    sweep = tmp_path / "ro.yaml"
    sweep.write_text("name: ro\nmodel: {latent: 2}\n")
    assert main(["sweep", str(sweep), "--results", str(read_only)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hpcsweep: error: ") and err.count("\n") == 1 and "choose another --results" in err
