"""The dataset cache: stale temp dirs, damaged entries, unusable cache dirs, `gprec cache`."""

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gprec.cli.main import main
from gprec.config import DataConfig
from gprec.data import cache
from gprec.data.dataset import load_dataset
from gprec.errors import ConfigError

SMALL = {"n_users": 100, "n_items": 30, "n_interactions": 1000}
TINY_RUN = [
    "--set", "data.synthetic={n_users: 150, n_items: 60, n_interactions: 4000, n_groups: 4, seed: 1}",
    "--set", "train.max_epochs=1",
    "--set", "train.batch_size=512",
    "--set", "train.progress=false",
]  # fmt: skip


def small_cfg(cache_dir, **kw) -> DataConfig:
    return DataConfig(cache_dir=str(cache_dir), synthetic=SMALL, **kw)


def entries(cache_dir) -> list:
    return sorted(p.name for p in cache_dir.iterdir() if cache.ENTRY_NAME.match(p.name))


def temps(cache_dir) -> list:
    return sorted(p.name for p in cache_dir.glob(".tmp-*"))


def make_temp(cache_dir, pid: int | str, host: str | None = None, age_h: float = 0):
    """A writer's temp dir as gprec names it, holding one partly written array."""
    host = host or cache._HOST
    path = cache_dir / f".tmp-{pid}-{host}-abc123"
    path.mkdir(parents=True)
    (path / "X_train.npy").write_bytes(b"\x93NUMPY partial")
    if age_h:
        old = time.time() - age_h * 3600
        for p in (path / "X_train.npy", path):
            os.utime(p, (old, old))
    return path


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def one_error_line(capsys) -> str:
    """The one `gprec: error:` line, last on stderr (progress lines may precede it)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert (
        "Traceback" not in err and [x for x in lines if x.startswith("gprec: error")] == lines[-1:]
    ), lines
    return lines[-1]


# ---- item 3: temp dirs left by a killed writer -------------------------------------------

WRITER = rf"""
import sys, time
import numpy as np
real_save = np.save

def save_then_hang(*args, **kwargs):
    real_save(*args, **kwargs)
    print("writing", flush=True)
    time.sleep(600)

np.save = save_then_hang
from gprec.config import DataConfig
from gprec.data.dataset import load_dataset

load_dataset(DataConfig(cache_dir=sys.argv[1], synthetic={SMALL!r}), seed=0)
"""


def test_a_writer_killed_mid_write_leaves_a_temp_dir_the_next_write_removes(tmp_path):
    c = tmp_path / "cache"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(c)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline() == "writing\n"  # the first array is on disk
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    (left,) = temps(c)
    assert left.startswith(f".tmp-{writer.pid}-") and (c / left / "X_train.npy").is_file()
    assert entries(c) == []
    live = cache._make_temp(c)  # this process's own: a writer still at work
    (live / "X_train.npy").write_bytes(b"in progress")

    ds = load_dataset(small_cfg(c), seed=0)

    assert not ds.from_cache and len(entries(c)) == 1
    assert temps(c) == [live.name]  # the killed writer's dir is gone, the live one kept
    assert (live / "X_train.npy").read_bytes() == b"in progress"


def test_stale_temp_dirs_are_judged_by_pid_host_and_age(tmp_path):
    c = tmp_path / "cache"
    dead = make_temp(c, dead_pid())
    live = make_temp(c, os.getpid())
    live_but_idle_for_days = make_temp(c, 1, age_h=48)  # pid 1 lives: reused, abandoned
    other_host = make_temp(c, 12345, host="elsewhere")
    other_host_old = make_temp(c, 12346, host="elsewhere", age_h=7)
    legacy = c / ".tmp-k3j_9x0q"  # named by an older gprec: no pid
    legacy.mkdir()
    legacy_old = c / ".tmp-zz1a2b3c"
    legacy_old.mkdir()
    old = time.time() - 7 * 3600
    os.utime(legacy_old, (old, old))

    removed = {t.path for t in cache.remove_stale_temps(c)}

    assert removed == {dead, live_but_idle_for_days, other_host_old, legacy_old}
    assert sorted(temps(c)) == sorted(p.name for p in (live, other_host, legacy))


def test_a_temp_dir_holding_foreign_files_is_never_removed(tmp_path):
    c = tmp_path / "cache"
    dead = make_temp(c, dead_pid())
    (dead / "thesis.tex").write_text("mine")
    assert cache.remove_stale_temps(c) == []
    assert (dead / "thesis.tex").read_text() == "mine"


# ---- item 4: damaged entries are found and rebuilt ---------------------------------------


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated X_train.npy": lambda e: truncate(e / "X_train.npy"),
    "changed byte in X_train.npy": lambda e: flip_last_byte(e / "X_train.npy"),
    "corrupt meta.json": lambda e: (e / "meta.json").write_text("{not json"),
    "meta.json of another shape": lambda e: (e / "meta.json").write_text("[1, 2]"),
    "deleted y_valid.npy": lambda e: (e / "y_valid.npy").unlink(),
    "deleted meta.json": lambda e: (e / "meta.json").unlink(),
    "changed vocab.json": lambda e: flip_last_byte(e / "vocab.json"),
    "garbage npy header": lambda e: (e / "y_test.npy").write_bytes(
        b"x" * (e / "y_test.npy").stat().st_size
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_entry_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    c = tmp_path / "cache"
    first = load_dataset(small_cfg(c), seed=0)
    (name,) = entries(c)
    DAMAGE[damage](c / name)

    with caplog.at_level(logging.WARNING):
        rebuilt = load_dataset(small_cfg(c), seed=0)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"cache entry {c / name} is damaged (")
    assert warnings[0].endswith("); rebuilding it")
    assert not rebuilt.from_cache
    for s in ("train", "valid", "test"):
        assert np.array_equal(first.X[s], rebuilt.X[s]) and np.array_equal(first.y[s], rebuilt.y[s])
    assert entries(c) == [name] and temps(c) == []  # replaced in place, nothing left over
    caplog.clear()
    again = load_dataset(small_cfg(c), seed=0)
    assert again.from_cache and not caplog.records


def test_damage_reasons_name_the_file(tmp_path):
    c = tmp_path / "cache"
    load_dataset(small_cfg(c), seed=0)
    entry = c / entries(c)[0]
    truncate(entry / "X_train.npy")
    with pytest.raises(cache.Damaged, match=r"^X_train\.npy has [\d,]+ bytes, expected \d+$"):
        cache.read_entry(entry)
    load_dataset(small_cfg(c), seed=0)
    flip_last_byte(entry / "X_train.npy")
    with pytest.raises(cache.Damaged, match=r"^X_train\.npy fails its checksum$"):
        cache.read_entry(entry)


def test_train_rebuilds_a_damaged_entry_and_still_trains(tmp_path, capsys, caplog):
    c = tmp_path / "cache"
    args = ["train", *TINY_RUN, "--set", f"data.cache_dir={c}"]
    load_dataset(DataConfig(cache_dir=str(c), synthetic=TINY_SYNTH), seed=2024)
    (name,) = entries(c)
    truncate(c / name / "X_train.npy")

    with caplog.at_level(logging.WARNING):
        assert main([*args, "--out", str(tmp_path / "run")]) == 0

    assert any("is damaged" in r.getMessage() for r in caplog.records)
    assert "test auc" in capsys.readouterr().out
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert entries(c) == [name] and cache.read_entry(c / name)


TINY_SYNTH = {"n_users": 150, "n_items": 60, "n_interactions": 4000, "n_groups": 4, "seed": 1}


# ---- item 8: a cache dir that cannot be written ------------------------------------------


@pytest.mark.parametrize("command", ["train", "compare"])
@pytest.mark.parametrize("under", [False, True])
def test_a_cache_dir_that_is_a_file_is_refused_before_anything_is_written(
    tmp_path, capsys, command, under
):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("keep me")
    cache_dir = blocker / "cache" if under else blocker
    out = tmp_path / "out"
    extra = ["--models", "mlp", "--seeds", "1"] if command == "compare" else []
    args = [command, *TINY_RUN, "--set", f"data.cache_dir={cache_dir}", *extra]

    assert main([*args, "--out", str(out)]) == 2

    where = f"its parent {blocker} exists" if under else "exists"
    assert one_error_line(capsys) == (
        f"gprec: error: data.cache_dir {cache_dir}: {where} and is not a directory"
    )
    assert blocker.read_text() == "keep me" and not out.exists()


def test_a_read_only_cache_dir_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    # Tests run as root, for whom permission bits do not stop writes: os.access stands in.
    ro = tmp_path / "ro-cache"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode, **kw: path != ro and real_access(path, mode, **kw)
    )
    out = tmp_path / "run"

    assert main(["train", *TINY_RUN, "--set", f"data.cache_dir={ro}", "--out", str(out)]) == 2

    assert one_error_line(capsys) == (
        f"gprec: error: data.cache_dir {ro}: not writable; "
        "point data.cache_dir at a writable directory"
    )
    assert not out.exists() and list(ro.iterdir()) == []


def test_a_missing_cache_dir_under_a_read_only_parent_names_the_parent(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False)
    with pytest.raises(ConfigError) as e:
        load_dataset(small_cfg(tmp_path / "a" / "cache"), seed=0)
    assert str(e.value) == (
        f"data.cache_dir {tmp_path / 'a' / 'cache'}: not writable (its parent {tmp_path} is "
        "read-only); point data.cache_dir at a writable directory"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("target", "err"),
    [
        ("numpy.save", OSError(errno.ENOSPC, "No space left on device")),
        ("tempfile.mkdtemp", PermissionError(errno.EACCES, "Permission denied")),
        ("pathlib.Path.mkdir", OSError(errno.EROFS, "Read-only file system")),
    ],
)
def test_a_failed_cache_write_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, target, err):
    c = tmp_path / "cache"
    if target != "pathlib.Path.mkdir":
        c.mkdir()

    def fail(*args, **kwargs):
        raise err

    monkeypatch.setattr(target, fail)
    with pytest.raises(ConfigError) as e:
        load_dataset(small_cfg(c), seed=0)
    assert str(e.value) == f"data.cache_dir {c}: cannot write the dataset cache: {err.strerror}"
    assert not c.exists() or list(c.iterdir()) == []


def test_train_reports_a_full_disk_in_one_line(tmp_path, capsys, monkeypatch):
    c, out = tmp_path / "cache", tmp_path / "run"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("numpy.save", full)
    assert main(["train", *TINY_RUN, "--set", f"data.cache_dir={c}", "--out", str(out)]) == 2
    assert one_error_line(capsys) == (
        f"gprec: error: data.cache_dir {c}: cannot write the dataset cache: No space left on device"
    )
    assert not out.exists() and list(c.iterdir()) == []


def test_the_default_and_env_cache_dirs_are_named_in_messages(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("GPREC_CACHE", str(blocker))
    with pytest.raises(ConfigError, match=r"^\$GPREC_CACHE .*/file: exists and is not a dir"):
        load_dataset(DataConfig(synthetic=SMALL), seed=0)
    monkeypatch.delenv("GPREC_CACHE")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".gprec_cache").write_text("")
    with pytest.raises(ConfigError, match=r"^data.cache_dir \(default\) .gprec_cache: exists"):
        load_dataset(DataConfig(synthetic=SMALL), seed=0)


def test_a_read_only_cache_that_holds_the_entry_is_still_used(tmp_path, monkeypatch):
    c = tmp_path / "cache"
    first = load_dataset(small_cfg(c), seed=0)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False)
    again = load_dataset(small_cfg(c), seed=0)
    assert again.from_cache and np.array_equal(first.X["train"], again.X["train"])


# ---- item 17: gprec cache list|clean ----------------------------------------------------


def filled_cache(tmp_path):
    """A cache with two entries (one last used 10 days ago) and two temp dirs."""
    c = tmp_path / "cache"
    load_dataset(small_cfg(c), seed=0)
    old_name = entries(c)[0]
    load_dataset(small_cfg(c), seed=1)
    (new_name,) = set(entries(c)) - {old_name}
    ten_days = time.time() - 10 * 86400
    os.utime(c / old_name, (ten_days, ten_days))
    stale = make_temp(c, dead_pid())
    live = make_temp(c, os.getpid())
    return c, old_name, new_name, stale, live


def test_cache_list_shows_entries_and_temp_dirs(tmp_path, capsys):
    c, old_name, new_name, stale, live = filled_cache(tmp_path)
    (c / old_name / "y_test.npy").unlink()
    ten_days = time.time() - 10 * 86400
    os.utime(c / old_name, (ten_days, ten_days))  # the unlink made it look just used

    assert main(["cache", "list", "--cache-dir", str(c)]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"cache {c}: 2 entries, ") and out[0].endswith(" KB")
    old = next(line for line in out if old_name in line)
    new = next(line for line in out if new_name in line)
    assert old.split()[0] == "synthetic" and "1,000 rows" in old and "last used 10 d ago" in old
    assert "[damaged: y_test.npy is missing; rebuilt on next use]" in old
    assert "KB" in new and "last used" in new and "damaged" not in new
    assert any(stale.name in line and "stale: its writer (pid" in line for line in out)
    assert any(live.name in line and f"in use?: being written by pid {os.getpid()}" in line for line in out)  # fmt: skip


def test_cache_clean_removes_entries_and_stale_temps_only(tmp_path, capsys):
    c, old_name, new_name, stale, live = filled_cache(tmp_path)

    assert main(["cache", "clean", "--cache-dir", str(c)]) == 0

    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"removed {old_name} (") for line in out)
    assert any(line.startswith(f"removed {new_name} (") for line in out)
    assert any(line.startswith(f"removed temp dir {stale.name} (") for line in out)
    assert f"kept temp dir {live.name} (being written by pid {os.getpid()})" in out
    assert out[-1].startswith("freed ") and out[-1].endswith("(2 entries, 1 temp dir)")
    assert entries(c) == [] and temps(c) == [live.name]


def test_cache_clean_older_than_keeps_recent_entries(tmp_path, capsys):
    c, old_name, new_name, stale, live = filled_cache(tmp_path)
    assert main(["cache", "clean", "--cache-dir", str(c), "--older-than", "7"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("(1 entry, 1 temp dir)")
    assert entries(c) == [new_name] and temps(c) == [live.name]


def test_cache_clean_temp_only_keeps_every_entry(tmp_path, capsys):
    c, old_name, new_name, stale, live = filled_cache(tmp_path)
    assert main(["cache", "clean", "--cache-dir", str(c), "--temp-only"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("(0 entries, 1 temp dir)")
    assert entries(c) == sorted([old_name, new_name]) and temps(c) == [live.name]


def test_cache_clean_dry_run_deletes_nothing(tmp_path, capsys):
    c, old_name, new_name, stale, live = filled_cache(tmp_path)
    before = sorted(p.name for p in c.iterdir())
    assert main(["cache", "clean", "--cache-dir", str(c), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"would remove {old_name} (") for line in out)
    assert out[-1].startswith("would free ")
    assert sorted(p.name for p in c.iterdir()) == before


@pytest.mark.parametrize(
    "intruder",
    ["notes.txt", "synthetic-0123456789abcdef0123/thesis.tex", "photos/cat.jpg"],
)
def test_cache_clean_refuses_a_directory_that_is_not_a_gprec_cache(tmp_path, capsys, intruder):
    c, *_ = filled_cache(tmp_path)
    (c / intruder).parent.mkdir(parents=True, exist_ok=True)
    (c / intruder).write_text("mine")
    before = sorted(str(p.relative_to(c)) for p in c.rglob("*"))

    assert main(["cache", "clean", "--cache-dir", str(c)]) == 2

    top = intruder.split("/")[0]
    assert one_error_line(capsys) == (
        f"gprec: error: {c} does not look like a gprec cache: it holds {top!r}, which gprec "
        "did not write; nothing was deleted"
    )
    assert sorted(str(p.relative_to(c)) for p in c.rglob("*")) == before


def test_cache_commands_on_a_missing_or_file_cache_dir(tmp_path, capsys):
    assert main(["cache", "list", "--cache-dir", str(tmp_path / "none")]) == 0
    assert capsys.readouterr().out == f"no cache at {tmp_path / 'none'}\n"
    (tmp_path / "f").write_text("keep")
    assert main(["cache", "clean", "--cache-dir", str(tmp_path / "f")]) == 2
    assert one_error_line(capsys) == f"gprec: error: --cache-dir {tmp_path / 'f'}: not a directory"
    assert (tmp_path / "f").read_text() == "keep"
    assert main(["cache", "clean", "--cache-dir", str(tmp_path), "--older-than", "-1"]) == 2
    assert (
        one_error_line(capsys) == "gprec: error: --older-than -1.0: must be a number of days >= 0"
    )


def test_cache_commands_default_to_gprec_cache_env_then_dot_gprec_cache(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GPREC_CACHE", raising=False)
    load_dataset(DataConfig(synthetic=SMALL), seed=0)
    assert main(["cache", "list"]) == 0
    assert capsys.readouterr().out.startswith("cache .gprec_cache: 1 entry")
    monkeypatch.setenv("GPREC_CACHE", str(tmp_path / "env-cache"))
    load_dataset(DataConfig(synthetic=SMALL), seed=0)
    assert main(["cache", "clean"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("(1 entry, 0 temp dirs)")
    assert entries(tmp_path / "env-cache") == [] and len(entries(tmp_path / ".gprec_cache")) == 1


def test_a_used_entry_counts_as_recently_used(tmp_path):
    c = tmp_path / "cache"
    load_dataset(small_cfg(c), seed=0)
    entry = c / entries(c)[0]
    os.utime(entry, (0, 0))
    load_dataset(small_cfg(c), seed=0)
    assert time.time() - entry.stat().st_mtime < 60
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["format"] == cache.CACHE_FORMAT and meta["origin"] == {"path": None, "seed": 0}


def test_the_cache_command_module_imports_no_numpy():
    code = "import sys, gprec.cli.cache; print([m for m in ('numpy', 'polars', 'torch') if m in sys.modules])"  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_damaged_entry_holding_foreign_files_is_not_replaced(tmp_path):
    c = tmp_path / "cache"
    load_dataset(small_cfg(c), seed=0)
    entry = c / entries(c)[0]
    (entry / "meta.json").unlink()
    (entry / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"is not a gprec cache entry \(it holds other files\)"):
        load_dataset(small_cfg(c), seed=0)
    assert (entry / "notes.txt").read_text() == "mine" and temps(c) == []
