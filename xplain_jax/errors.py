"""Which exceptions are the user's to fix, and how they are shown: one line, no traceback."""

from __future__ import annotations

from xplain_jax.checkpoint import CheckpointError
from xplain_jax.train.logger import NonFiniteError
from xplain_jax.validate import ConfigError

# Errors raised on purpose with a message that says what to do. Anything else is a bug and
# keeps its traceback.
USER_ERRORS = (ConfigError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError,
               NonFiniteError, CheckpointError, ImportError, KeyError)


def one_line(e: BaseException) -> str:
  """The exception's message on one line (KeyError quotes stripped)."""
  msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
  return " ".join(msg.split()) or type(e).__name__


def exit_code(e: BaseException) -> int:
  """2 for config/usage errors, 1 for problems found while running."""
  return 2 if isinstance(e, ConfigError) else 1
