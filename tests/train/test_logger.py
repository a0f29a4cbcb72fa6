"""The JSON-lines training log: kept lines on resume, a damaged log rewritten, not a traceback."""

import json
import logging

import pytest

from xplain_jax.train import logger


def _lines(path):
  return path.read_text(encoding="utf-8").splitlines()


def test_resume_keeps_lines_up_to_the_restored_step(tmp_path):
  path = tmp_path / "logs" / "s.jsonl"
  writer = logger.JsonlWriter(str(path))
  for step in (1, 2, 3):
    writer.write_scalars(step, {"loss": float(step)})
  with open(path, "a", encoding="utf-8") as f:
    f.write('{"step": 4, "lo')  # a line cut by a kill
  writer = logger.JsonlWriter(str(path), start_step=2)
  assert [json.loads(l)["step"] for l in _lines(path)] == [1, 2]
  assert [r["step"] for r in writer.records] == [1, 2]


@pytest.mark.parametrize("damage", [
    bytes(range(256)) * 8,                                    # binary bytes, not UTF-8
    b'{"step": 1, "loss": 0.5}\n\xff\xfe\x00junk\n[1, 2]\n{"step": "x"}\n{"step": 2}\n',
])
def test_damaged_log_is_rewritten_with_a_warning(tmp_path, damage, caplog):
  path = tmp_path / "logs" / "explainer_prior.jsonl"
  path.parent.mkdir()
  path.write_bytes(damage)
  with caplog.at_level(logging.WARNING):
    writer = logger.make_writer(str(tmp_path), "explainer_prior", total_steps=4, start_step=2)
  assert "explainer_prior.jsonl" in caplog.text and "damaged" in caplog.text
  kept = [json.loads(l) for l in _lines(path)]  # valid UTF-8 JSON lines only
  assert kept == [r for r in ({"step": 1, "loss": 0.5}, {"step": 2})
                  if bytes(damage).startswith(b"{")]
  writer.write_scalars(3, {"loss": 0.25})
  writer.close()
  assert json.loads(_lines(path)[-1]) == {"step": 3, "loss": 0.25}
  assert logger.read_records(str(path)) == (kept + [{"step": 3, "loss": 0.25}], 0)


def test_damaged_log_does_not_stop_the_report(tmp_path):
  from xplain_jax.report import io  # pylint: disable=g-import-not-at-top
  (tmp_path / "s.jsonl").write_bytes(b'\xff\xfe binary\n{"step": 1, "loss": 2.0}\n')
  assert io.load_logs(str(tmp_path)) == {"s": [{"step": 1, "loss": 2.0}]}
