"""The persistent compilation cache: where it lives, switching it off, a second process's hits."""

import json
import os
import subprocess
import sys

import jax
import pytest

from xplain_jax.infra import compile_cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A child process: enables the cache as every entry point does (keeping every compile), compiles
# a gradient step and reports what it found and left in the folder.
CHILD = r"""
import json, sys
import jax, jax.numpy as jnp
from xplain_jax.infra import compile_cache

hits = []
jax.monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event.endswith("/cache_hits") else None)
path = compile_cache.enable()
# every compile kept, however short: under load a small op's compile can cross the minimum time
# in one process and not the other, which would make the entry counts differ by chance
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

def loss(w, x):
  for k in range(6):
    x = jnp.tanh(x @ w[k]) + jnp.sin(x)
  return jnp.sum(x ** 2)

value, grad = jax.jit(jax.value_and_grad(loss))(jnp.full((6, 16, 16), 0.01), jnp.ones((4, 16)))
result = {"path": path, "value": float(value), "grad": float(grad.sum())}
result.update(hits=len(hits), entries=compile_cache.disk_usage(path)[0] if path else 0)
print(json.dumps(result))
"""


def _child(env_value, tmp_path):
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
  env[compile_cache.ENV_VAR] = env_value
  env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
  out = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=240, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_second_process_reads_the_first_ones_compiles(tmp_path):
  folder = tmp_path / "cache"
  first = _child(str(folder), tmp_path)
  assert first["path"] == str(folder)
  assert first["hits"] == 0 and first["entries"] >= 1
  second = _child(str(folder), tmp_path)
  assert second["hits"] >= 1
  assert second["entries"] == first["entries"]  # nothing compiled anew
  assert (second["value"], second["grad"]) == (first["value"], first["grad"])


@pytest.mark.slow
def test_off_writes_nothing(tmp_path):
  out = _child("off", tmp_path)
  assert out["path"] is None and out["hits"] == 0
  assert not (tmp_path / "xdg").exists()


def test_the_folder_is_the_variable_then_jax_then_the_user_cache(monkeypatch, tmp_path):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  monkeypatch.setenv(compile_cache.ENV_VAR, "~/elsewhere")
  assert compile_cache.resolve_dir() == os.path.expanduser("~/elsewhere")
  monkeypatch.setenv(compile_cache.ENV_VAR, " OFF ")
  assert compile_cache.resolve_dir() is None
  monkeypatch.delenv(compile_cache.ENV_VAR)
  jax_dir = jax.config.jax_compilation_cache_dir  # the session's (tests/conftest.py)
  assert compile_cache.resolve_dir() == jax_dir
  jax.config.update("jax_compilation_cache_dir", None)
  try:
    assert compile_cache.resolve_dir() == str(tmp_path / "xplain_jax" / "jax_compilation_cache")
  finally:
    jax.config.update("jax_compilation_cache_dir", jax_dir)
  assert compile_cache.default_dir() == str(tmp_path / "xplain_jax" / "jax_compilation_cache")


def test_an_unwritable_folder_leaves_the_cache_off(monkeypatch, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  monkeypatch.setenv(compile_cache.ENV_VAR, str(blocker / "cache"))
  assert compile_cache.enable() is None


def test_disk_usage_counts_entries_and_bytes(tmp_path):
  assert compile_cache.disk_usage(str(tmp_path / "missing")) == (0, 0)
  (tmp_path / "a").write_bytes(b"x" * 10)
  (tmp_path / "sub").mkdir()
  (tmp_path / "sub" / "b").write_bytes(b"y" * 5)
  assert compile_cache.disk_usage(str(tmp_path)) == (2, 15)


def test_the_command_reports_and_clears(monkeypatch, tmp_path, capsys):
  folder = tmp_path / "cache"
  folder.mkdir()
  (folder / "entry").write_bytes(b"z" * 2048)
  monkeypatch.setenv(compile_cache.ENV_VAR, str(folder))
  compile_cache.main([])
  assert "1 entries" in capsys.readouterr().out and folder.exists()
  compile_cache.main(["--clear"])
  assert "cleared" in capsys.readouterr().out and not folder.exists()
