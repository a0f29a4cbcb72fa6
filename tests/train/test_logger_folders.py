"""Log folders that cannot be written stop a run before any training, in one line (hostile
trial: a TensorBoard folder without write permission raised a PermissionError traceback at a
new variant's first logged step, after the earlier stages had trained for minutes)."""

import errno
import os

import pytest

from xplain_jax.errors import StorageError
from xplain_jax.train import logger

from test_catalogue import run_cli


def test_a_file_where_a_stage_log_folder_goes_is_one_line(tmp_path):
  (tmp_path / "logs").mkdir()
  (tmp_path / "logs" / "explainer_prior").write_text("not a folder")
  with pytest.raises(StorageError) as e:
    logger.check_log_folders(str(tmp_path), ["performer", "explainer_prior"])
  msg = str(e.value)
  assert "\n" not in msg and "logs/explainer_prior" in msg
  assert "a file stands where a folder" in msg and "rerun the same command" in msg
  logger.check_log_folders(str(tmp_path), ["performer"])   # the others are fine
  assert sorted(os.listdir(tmp_path / "logs" / "performer")) == []   # no probe left


def test_an_unwritable_log_folder_stops_make_writer_before_training(tmp_path, monkeypatch):
  """(Simulated: the tests may run as root, whom permissions do not stop.)"""
  real = logger.tempfile.mkstemp

  def refuse(*args, dir=None, **kw):  # pylint: disable=redefined-builtin
    if dir and os.path.basename(dir) == "explainer_prior":
      raise PermissionError(errno.EPERM, "Operation not permitted", dir)
    return real(*args, dir=dir, **kw)

  monkeypatch.setattr(logger.tempfile, "mkstemp", refuse)
  with pytest.raises(StorageError, match=r"logs/explainer_prior/: Operation not permitted; "
                                         r"make .* writable"):
    logger.make_writer(str(tmp_path), "explainer_prior", 10)
  logger.make_writer(str(tmp_path), "performer", 10).close()


@pytest.mark.slow
def test_a_run_with_an_unwritable_variant_log_folder_stops_before_the_performer(tmp_path):
  work = tmp_path / "work"
  (work / "logs").mkdir(parents=True)
  (work / "logs" / "explainer_prior").write_text("not a folder")
  out = run_cli(["--config=configs/synthetic.py:tiny", f"--workdir={work}",
                 "--config.stages=performer,explainer"])
  lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
  assert out.returncode == 1, out.stderr[-2000:]
  assert "Traceback" not in out.stderr
  assert lines[-1].startswith("error: cannot write") and "logs/explainer_prior" in lines[-1]
  assert not (work / "performer").exists()   # nothing trained
