import numpy as np
import pytest

from conftest import write_ml100k
from gprec.config import DataConfig
from gprec.data.dataset import load_dataset
from gprec.errors import DataError


def _cfg(tmp_path, **kw):
    base = {
        "source": "ml-100k",
        "path": str(tmp_path / "ml-100k"),
        "cache_dir": str(tmp_path / "cache"),
    }
    return DataConfig(**(base | kw))


def test_second_load_reuses_the_cache(tmp_path):
    write_ml100k(tmp_path / "ml-100k")
    first = load_dataset(_cfg(tmp_path), seed=1)
    second = load_dataset(_cfg(tmp_path), seed=1)
    assert not first.from_cache and second.from_cache
    for s in ("train", "valid", "test"):
        assert np.array_equal(first.X[s], second.X[s]) and np.array_equal(first.y[s], second.y[s])
    assert [f.cardinality for f in first.fields] == [f.cardinality for f in second.fields]
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_cache_key_follows_seed_config_and_file_contents(tmp_path):
    data = write_ml100k(tmp_path / "ml-100k")
    load_dataset(_cfg(tmp_path), seed=1)
    assert not load_dataset(_cfg(tmp_path), seed=2).from_cache  # the seed fixes the split
    assert not load_dataset(_cfg(tmp_path, label_threshold=4), seed=1).from_cache
    with open(data / "u.data", "a") as fh:
        fh.write("1\t1\t5\t890000000\n")
    assert not load_dataset(_cfg(tmp_path), seed=1).from_cache
    assert len(list((tmp_path / "cache").iterdir())) == 4


def test_vocabulary_comes_from_train_only(tmp_path):
    write_ml100k(tmp_path / "ml-100k", n_users=200, n_ratings=400)
    ds = load_dataset(_cfg(tmp_path), seed=0)
    users = ds.fields[[f.name for f in ds.fields].index("user_id")]
    train_users = np.unique(ds.X["train"][:, 3])
    assert 0 not in train_users and users.cardinality == len(train_users) + 1
    assert (ds.X["test"][:, 3] == 0).any()  # some test users never rated in train


def test_a_bad_file_leaves_no_cache_behind(tmp_path):
    data = write_ml100k(tmp_path / "ml-100k")
    (data / "u.data").write_text("1\t2\t5\t880000000\n1,2,5,880000001\n")
    with pytest.raises(DataError, match=r"u\.data, line 2"):
        load_dataset(_cfg(tmp_path), seed=1)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_missing_directory_names_the_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(_cfg(tmp_path), seed=1)


def test_empty_dataset_is_an_error(tmp_path):
    data = write_ml100k(tmp_path / "ml-100k")
    (data / "u.data").write_text("")
    with pytest.raises(DataError, match="u.data"):
        load_dataset(_cfg(tmp_path), seed=1)
