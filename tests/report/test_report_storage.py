"""A report that cannot be written is one ``StorageError`` line that names the path and what
to do (hostile trial: a ``figures`` file in place of the folder, ``report.html`` a folder, a
``figures/`` folder without write permission each ended in a traceback), and nothing
half-written is left."""

import errno
import os

import pytest

from xplain_jax import report, utils
from xplain_jax.errors import StorageError

from test_report import DPI, _make_workdir


def _one_line(e) -> str:
  msg = str(e.value)
  assert "\n" not in msg and "rerun the same command" in msg, msg
  return msg


def test_figures_a_file_is_one_line(tmp_path):
  _make_workdir(tmp_path, "filter")
  (tmp_path / "figures").write_text("not a folder")
  with pytest.raises(StorageError) as e:
    report.write_report(str(tmp_path), dpi=DPI)
  msg = _one_line(e)
  assert "figures" in msg and "a file stands where a folder" in msg and "move the file" in msg
  assert (tmp_path / "figures").read_text() == "not a folder"
  assert not (tmp_path / "report.html").exists()


def test_report_html_a_folder_is_one_line(tmp_path):
  _make_workdir(tmp_path, "shared_feature")
  (tmp_path / "report.html").mkdir()
  with pytest.raises(StorageError) as e:
    report.write_report(str(tmp_path), dpi=DPI)
  msg = _one_line(e)
  assert "report.html" in msg and "a folder of that name is in the way" in msg
  assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_an_unwritable_figures_folder_is_one_line(tmp_path, monkeypatch):
  """(Simulated: the tests may run as root, whom permissions do not stop.)"""
  _make_workdir(tmp_path, "shared_feature")
  real = utils.tempfile.mkstemp

  def refuse(*args, dir=None, **kw):  # pylint: disable=redefined-builtin
    if dir and os.path.basename(dir) == "figures":
      raise PermissionError(errno.EACCES, "Permission denied", dir)
    return real(*args, dir=dir, **kw)

  monkeypatch.setattr(utils.tempfile, "mkstemp", refuse)
  with pytest.raises(StorageError) as e:
    report.write_report(str(tmp_path), dpi=DPI)
  msg = _one_line(e)
  assert ".png" in msg and "Permission denied" in msg and "writable" in msg


def test_a_full_disk_still_says_so(tmp_path):
  err = utils.write_error(OSError(errno.ENOSPC, "No space left on device"), "x/a.png")
  assert "cannot write x/a.png: the disk is full; free space" in str(err)
