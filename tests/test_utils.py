"""The package's one atomic writer, flattener and comma-list parser (xplain_jax/utils.py)."""

import errno
import os

import ml_collections
import pytest

from xplain_jax import utils
from xplain_jax.errors import StorageError


def test_write_atomic_fsyncs_before_replacing(tmp_path, monkeypatch):
  path = tmp_path / "sub" / "a.txt"  # the folder is created
  order = []
  real_fsync, real_replace = os.fsync, os.replace
  monkeypatch.setattr(os, "fsync", lambda fd: order.append("fsync") or real_fsync(fd))
  monkeypatch.setattr(os, "replace", lambda a, b: order.append("replace") or real_replace(a, b))
  utils.write_atomic(path, lambda f: f.write("αβ\n"), binary=False)
  assert order == ["fsync", "replace"]
  assert path.read_bytes() == "αβ\n".encode("utf-8")
  assert os.listdir(path.parent) == ["a.txt"]


def test_write_atomic_keeps_the_previous_file_when_the_write_fails(tmp_path):
  path = tmp_path / "a.bin"
  utils.write_atomic(path, lambda f: f.write(b"old"))

  def full(f):
    f.write(b"half")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  with pytest.raises(StorageError, match="the disk is full"):
    utils.write_atomic(path, full)
  assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.bin"]


def test_flatten_dicts_and_config_dicts_alike():
  tree = {"b": {"c": 1, "d": {"e": (2, 3)}}, "a": "x", "empty": {}}
  want = {"b.c": 1, "b.d.e": (2, 3), "a": "x"}
  assert utils.flatten(tree) == want
  assert list(utils.flatten(tree)) == ["b.c", "b.d.e", "a"]  # key order kept
  assert utils.flatten(ml_collections.ConfigDict(tree)) == want
  assert utils.flatten({"k": 1}, "config.") == {"config.k": 1}


@pytest.mark.parametrize("text, words", [
    ("a,b", ["a", "b"]), (" a , b ,, c,", ["a", "b", "c"]), ("", []), (" , ", []),
    ("performer", ["performer"]), (3, ["3"])])
def test_split_list(text, words):
  assert utils.split_list(text) == words


def test_dotted_fields_are_read_and_set_in_place():
  c = ml_collections.ConfigDict({"a": {"b": 1, "c": {"d": "x"}}, "top": 2})
  assert utils.set_fields(c, {"a.c.d": "y", "top": 3}) is c
  assert (utils.get_field(c, "a.c.d"), c.top, utils.get_field(c, "a.b")) == ("y", 3, 1)
  with pytest.raises(KeyError):
    utils.get_field(c, "a.missing")
