"""The catalogue of bad inputs: what goes wrong, what the run says, and what to do about it.

One list of dicts, used by ``tests/test_catalogue.py`` (which runs every case) and by the
README's troubleshooting table (``python tests/catalogue_cases.py`` prints it as markdown).

Keys of a case:
  id: short name.
  problem: the mistake, in words.
  kind: "cli" (``launch/run.py`` as a subprocess) or "api" (an in-process call, see
    ``test_catalogue.API_CASES``).
  argv: (cli) arguments after ``launch/run.py``. ``{workdir}`` is a fresh directory holding one
    unrelated file, ``{prepared}`` a copy of a workdir whose performer stage has finished,
    ``{empty}`` an empty directory, ``{file}`` a regular file.
  env: (cli) extra environment variables.
  damage: (cli) what is broken in the workdir before the run: "all_checkpoints",
    "metrics_json", "data_cache", "config_json_truncated", "config_json_replaced" or
    "config_json_deleted".
  config_file: (cli) text of a config file written to ``{config_file}`` (named
    ``config_name``, default "config_case.py").
  hold_lock: (cli) the test holds the workdir's lock while the run starts (another run).
  skip: a reason; the case waits for wiring in a file named there (it is not run).
  exit: expected exit status (a tuple: any of them); None for "api" cases, whose ``raises``
    names the exception ("—": the case recovers by itself).
  words: words the last line of stderr must contain (case-insensitive); for exit 0, words of
    stderr.
  repaired: (exit 0) files the run may rewrite, each back to its undamaged content.
  fix: what to do (the README's answer).
"""

TINY = "--config=configs/synthetic.py:tiny"

CASES = [
    # --- config values (exit 2, before any compute) ---
    dict(id="negative_beta", problem="negative β", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.beta=-1"], exit=2,
         words=["explainer.beta", ">= 0"], fix="Use β ≥ 0 (0 switches the prior loss off)."),
    dict(id="zero_batch_size", problem="batch size 0", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.performer.batch_size=0"], exit=2,
         words=["performer.batch_size", "positive"], fix="Use a positive batch size."),
    dict(id="negative_batch_size", problem="negative batch size", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.batch_size=-8"], exit=2,
         words=["explainer.batch_size", "positive"], fix="Use a positive batch size."),
    dict(id="batch_not_divisible", problem="batch size not divisible by the device count",
         kind="cli", env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
         argv=[TINY, "--workdir={workdir}", "--config.performer.batch_size=15"], exit=(1, 2),
         words=["performer.batch_size", "15", "2 devices", "multiple of 2"],
         fix="Use a global batch size that is a multiple of the number of devices."),
    dict(id="unknown_arch", problem="unknown performer architecture", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.performer.arch=resnet9000"], exit=2,
         words=["performer.arch", "resnet9000", "choose one of"],
         fix="Pick an architecture from the list in the message."),
    dict(id="unknown_dataset", problem="unknown dataset", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.dataset.name=mnist"], exit=2,
         words=["dataset.name", "mnist", "choose one of"],
         fix="Pick a dataset from the list in the message."),
    dict(id="unknown_target", problem="unknown explained target", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.target=target_z"], exit=2,
         words=["explainer.target", "target_z", "choose one of"],
         fix="Pick a target of that dataset (CelebA: any of its 40 attributes)."),
    dict(id="unknown_prior_kind", problem="unknown prior loss", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.prior_kind=l1"], exit=2,
         words=["explainer.prior_kind", "l1", "choose one of"],
         fix="Use prior_kind 'mse' or 'cross_entropy'."),
    dict(id="unknown_optimizer", problem="unknown optimizer", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.performer.optimizer.name=lion"], exit=2,
         words=["performer.optimizer.name", "lion", "choose one of"],
         fix="Use adam, adamw or sgd."),
    dict(id="string_for_number", problem="a string where a number belongs", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.beta=abc"], exit=2,
         words=["explainer.beta", "abc", "type"], fix="Give a value of the field's type."),
    dict(id="float_for_int", problem="a fraction where an integer belongs", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.performer.batch_size=1.5"], exit=2,
         words=["performer.batch_size", "1.5", "type"], fix="Give an integer."),
    dict(id="image_too_small_for_arch", problem="image size too small for the architecture",
         kind="cli", argv=["--config=configs/celeba.py:target=male", "--workdir={workdir}",
                           "--config.dataset.image_size=16"], exit=2,
         words=["dataset.image_size", "vgg16", "at least 32"],
         fix="Raise dataset.image_size to the minimum in the message, or pick a smaller "
             "architecture."),
    dict(id="image_too_small_for_data", problem="image size too small for the synthetic data",
         kind="cli", argv=[TINY, "--workdir={workdir}", "--config.dataset.image_size=8"], exit=2,
         words=["image_size 8", "too small", ">= 32"], fix="Use dataset.image_size ≥ 32."),
    dict(id="bad_weight_net_depth", problem="weight-network depth not a ResNet depth",
         kind="cli", argv=[TINY, "--workdir={workdir}", "--config.explainer.depth=11"], exit=2,
         words=["explainer.depth", "11", "ResNet depth"],
         fix="Use one of the ResNet depths in the message (10, 18, 34, 50, 101, 152)."),
    dict(id="unknown_stage", problem="unknown stage name", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.stages=performer,train"], exit=2,
         words=["stages", "train", "performer,explainer,evaluate,report"],
         fix="Use a comma-separated subset of performer,explainer,evaluate,report."),
    dict(id="unknown_variant", problem="unknown explainer variant", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.variants=baseline,fancy"],
         exit=2, words=["explainer.variants", "baseline,prior"],
         fix="Use baseline, prior or both, comma-separated."),
    dict(id="cross_entropy_signed", problem="cross-entropy prior with signed α", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.prior_kind=cross_entropy"],
         exit=2, words=["cross-entropy", "positive=True", "mse"],
         fix="Set explainer.positive=True, or use prior_kind='mse'."),
    dict(id="unknown_dtype", problem="unknown compute dtype", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.dtype=float64"], exit=2,
         words=["dtype", "float64", "choose one of"], fix="Use float32, bfloat16 or float16."),
    dict(id="zero_learning_rate", problem="learning rate 0", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.optimizer.learning_rate=0"],
         exit=2, words=["explainer.optimizer.learning_rate", "> 0"],
         fix="Use a positive learning rate."),
    dict(id="empty_test_split", problem="empty evaluation set", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.dataset.num_test=0"], exit=2,
         words=["dataset.num_test", "at least 1"],
         fix="Use at least one test image (for CelebA, 0 means the whole split)."),
    dict(id="negative_grad_clip", problem="negative gradient clipping (would ascend)",
         kind="cli", argv=[TINY, "--workdir={workdir}",
                           "--config.performer.optimizer.grad_clip=-1"], exit=2,
         words=["performer.optimizer.grad_clip", ">= 0"], fix="Use grad_clip ≥ 0 (0 = off)."),
    dict(id="misspelt_schedule", problem="unknown learning-rate schedule", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.performer.optimizer.schedule=cosin"],
         exit=2, words=["performer.optimizer.schedule", "cosin", "choose one of"],
         fix="Use schedule 'constant' or 'cosine'."),
    dict(id="dropout_above_one", problem="dropout rate above 1", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.performer.model.dropout_rate=1.5"],
         exit=2, words=["performer.model.dropout_rate", "[0, 1]"],
         fix="Use a dropout rate in [0, 1)."),
    dict(id="negative_weight_decay", problem="negative weight decay", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.optimizer.weight_decay=-0.1"],
         exit=2, words=["explainer.optimizer.weight_decay", ">= 0"],
         fix="Use weight_decay ≥ 0."),
    dict(id="negative_warmup", problem="negative warm-up steps", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.performer.optimizer.warmup_steps=-5"],
         exit=2, words=["performer.optimizer.warmup_steps", ">= 0"],
         fix="Use warmup_steps ≥ 0."),
    dict(id="arch_contradicts_model_block", problem="an architecture the model block "
         "contradicts (vgg16 with a tiny VGG's layers)", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.performer.arch=vgg16"], exit=2,
         words=["performer.model.block_widths", "vgg16", "tiny_vgg"],
         fix="Start from a config written for that architecture (e.g. configs/parts.py:vgg16), "
             "or keep a small architecture."),
    dict(id="negative_seed", problem="negative seed", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.seed=-1"], exit=2,
         words=["config.seed=-1", "[0, 2147483647]"], fix="Use a seed in [0, 2³¹ − 1]."),
    dict(id="zero_weight_net_width", problem="weight-network width 0", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.width=0"], exit=2,
         words=["explainer.width", "positive"], fix="Use a positive width."),
    dict(id="nan_beta", problem="β = NaN", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.beta=nan"], exit=2,
         words=["explainer.beta", "finite"], fix="Use a finite β ≥ 0."),
    dict(id="too_many_devices", problem="more devices asked for than visible", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.num_devices=64"], exit=2,
         words=["num_devices", "64", "visible"],
         fix="Lower config.num_devices, or 0 for all visible devices."),
    dict(id="later_stage_on_empty_workdir", problem="a later stage alone on an empty workdir",
         kind="cli", argv=[TINY, "--workdir={workdir}", "--config.stages=report",
                           "--config.explainer.beta=0.5"], exit=2,
         words=["config.stages=report", "evaluate", "not finished"],
         fix="Add the earlier stages to config.stages (nothing was recorded, so the corrected "
             "command is accepted)."),
    dict(id="bad_config_argument", problem="unknown config-file argument (after ':')",
         kind="cli", argv=["--config=configs/synthetic.py:bogus", "--workdir={workdir}"],
         exit=2, words=["bogus", "tiny"], fix="Use an argument the config file's docstring lists."),
    # --- the config file itself (exit 2) ---
    dict(id="config_syntax_error", problem="config file with a syntax error", kind="cli",
         config_file="def get_config(arg=''):\n  return {\n", argv=["--config={config_file}",
                                                                   "--workdir={workdir}"],
         exit=2, words=["cannot load the config file", "line"],
         fix="Fix the Python syntax at the line named."),
    dict(id="config_not_python", problem="config file that is not Python", kind="cli",
         config_file="explainer:\n  beta: 0.5\n", config_name="config_case.yaml",
         argv=["--config={config_file}", "--workdir={workdir}"], exit=2,
         words=["cannot load the config file", "config_case.yaml", "Python file"],
         fix="Pass a Python file defining get_config(arg) (see configs/)."),
    dict(id="config_get_config_raises", problem="config file whose get_config fails",
         kind="cli", config_file="def get_config(arg=''):\n  return 1 / 0\n",
         argv=["--config={config_file}", "--workdir={workdir}"], exit=2,
         words=["failed in get_config", "ZeroDivisionError"],
         fix="Fix get_config in the config file."),
    dict(id="config_without_get_config", problem="config file without get_config", kind="cli",
         config_file="BETA = 0.5\n", argv=["--config={config_file}", "--workdir={workdir}"],
         exit=2, words=["defines no get_config"],
         fix="Define get_config(arg) returning a ConfigDict built from xplain_jax.config_base."),
    # --- command line (exit 2) ---
    dict(id="unknown_config_field", problem="misspelt --config.FIELD", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.betta=0.5"], exit=2,
         words=["unknown config field", "--config.explainer.betta"],
         fix="Check the field's spelling in the config file."),
    dict(id="missing_workdir", problem="no --workdir", kind="cli", argv=[TINY], exit=2,
         words=["--workdir", "required"], fix="Pass --workdir=DIR."),
    dict(id="missing_config", problem="no --config", kind="cli", argv=["--workdir={workdir}"],
         exit=2, words=["--config", "required"], fix="Pass --config=configs/FILE.py[:ARG]."),
    dict(id="config_file_missing", problem="config file that does not exist", kind="cli",
         argv=["--config=configs/nothere.py", "--workdir={workdir}"], exit=2,
         words=["configs/nothere.py", "does not exist"], fix="Check the path of --config."),
    dict(id="extra_positional", problem="extra positional arguments", kind="cli",
         argv=[TINY, "--workdir={workdir}", "beta=0.5"], exit=2,
         words=["unexpected arguments", "beta=0.5", "--config.FIELD=VALUE"],
         fix="Pass settings as --config.FIELD=VALUE."),
    dict(id="unknown_flag", problem="unknown flag", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--beta=0.5"], exit=2,
         words=["Unknown command line flag", "beta", "usage"],
         fix="Only --config, --config.FIELD and --workdir are taken."),
    # --- workdir (exit 2) ---
    dict(id="workdir_under_a_file", problem="unwritable workdir (a path under a file)",
         kind="cli", argv=[TINY, "--workdir={file}/sub"], exit=2,
         words=["--workdir", "not writable"], fix="Choose a directory you can write to."),
    dict(id="workdir_is_a_file", problem="workdir that is a file", kind="cli",
         argv=[TINY, "--workdir={file}"], exit=2, words=["--workdir", "is a file"],
         fix="Choose a directory, not a file."),
    dict(id="workdir_of_other_config", problem="workdir holding a run of another config",
         kind="cli", argv=["{prepared_config}", "--workdir={prepared}",
                           "--config.explainer.beta=0.7"], exit=2,
         words=["different config", "explainer.beta", "new --workdir"],
         fix="Use a new --workdir (or delete the old one to start over)."),
    dict(id="config_json_truncated", problem="a truncated config.json in a workdir with results",
         kind="cli", argv=["{prepared_config}", "--workdir={prepared}",
                           "--config.explainer.beta=0.5"], damage="config_json_truncated",
         exit=2, words=["config.json", "not a config this program wrote", "left as it is"],
         fix="Move config.json out of the workdir (the checkpoints' run identities still guard "
             "the results) or use a new --workdir."),
    dict(id="config_json_replaced", problem="a user's own (non-JSON) config.json in the workdir",
         kind="cli", argv=["{prepared_config}", "--workdir={prepared}"],
         damage="config_json_replaced", exit=2,
         words=["config.json", "not a config this program wrote"],
         fix="Move your file out of the workdir; it is never overwritten."),
    dict(id="config_json_deleted", problem="config.json deleted, rerun with another config",
         kind="cli", argv=["{prepared_config}", "--workdir={prepared}",
                           "--config.performer.optimizer.learning_rate=0.01"],
         damage="config_json_deleted", exit=1,
         words=["different config", "performer.optimizer.learning_rate", "another --workdir"],
         fix="Use another --workdir, or delete the old one to start over."),
    dict(id="workdir_in_use", problem="a second run on a workdir in use", kind="cli",
         argv=[TINY, "--workdir={workdir}"], hold_lock=True, exit=1,
         words=["in use by process", "another --workdir"],
         fix="Wait for the other run (named in the message) to end, or use another --workdir. "
             "A killed run leaves no stale lock."),
    dict(id="peer_never_comes", problem="a multi-host peer that never starts", kind="cli",
         argv=[TINY, "--workdir={workdir}",
               "--config.distributed.coordinator_address=localhost:{port}",
               "--config.distributed.num_processes=2", "--config.distributed.process_id=0",
               "--config.distributed.initialization_timeout=5"], exit=1,
         words=["timed out", "coordinator localhost", "2 processes"],
         fix="Start every process with the same coordinator and count; raise "
             "distributed.initialization_timeout for slow starts."),
    # --- data (exit 1) ---
    dict(id="celeba_not_prepared", problem="CelebA not prepared", kind="cli",
         argv=["--config=configs/celeba.py:target=male,tiny", "--workdir={workdir}",
               "--config.dataset.data_dir={empty}"], exit=1,
         words=["CelebA is not prepared", "tfds build celeb_a"],
         fix="Prepare it once with the `tfds build` command in the message."),
    dict(id="pascal_part_not_prepared", problem="Pascal-Part not prepared", kind="cli",
         argv=["--config=configs/pascal_part.py:tiny", "--workdir={workdir}",
               "--config.dataset.data_dir={empty}"], exit=1,
         words=["Pascal-Part", "not prepared", "python -m xplain_jax.data.pascal_part"],
         fix="Prepare it once with the command in the message."),
    dict(id="damaged_data_cache", problem="damaged synthetic-data cache file", kind="cli",
         argv=["{prepared_config}", "--workdir={prepared}", "--config.stages=performer"],
         damage="data_cache", exit=0, words=[],
         repaired=["data/synthetic_attributes_v2_train_32_64_0.npz"],
         fix="Nothing: a damaged cache is regenerated (identically)."),
    # --- checkpoints, results, numbers (exit 1) ---
    dict(id="all_checkpoints_damaged", problem="every checkpoint of a stage unreadable",
         kind="cli", argv=["{prepared_config}", "--workdir={prepared}"],
         damage="all_checkpoints", exit=1,
         words=["none of the checkpoints", "can be read", "backup", "new --workdir"],
         fix="Restore the checkpoint folder from a backup, or start in a new --workdir. (A "
             "damaged *newest* checkpoint alone is reported, moved aside and the previous one "
             "used.)"),
    dict(id="damaged_metrics_json", problem="damaged metrics.json when running the report",
         kind="cli", argv=["{prepared_config}", "--workdir={prepared}", "--config.stages=report"],
         damage="metrics_json", exit=1, words=["metrics.json", "not valid JSON", "evaluate"],
         fix="Delete metrics.json and rerun the evaluate stage."),
    dict(id="damaged_eval_npz", raises="DamagedFileError (exit 1 in a run)",
         problem="a truncated eval/*.npz when writing the report", kind="api", exit=None,
         words=["prior.npz", "damaged", "evaluate stage"],
         fix="Delete the file and rerun the evaluate stage."),
    dict(id="disk_full_data_cache", problem="a full disk while writing the synthetic-data cache",
         kind="api", exit=None, raises="StorageError (exit 1 in a run)",
         words=["cannot write", "synthetic_attributes", "disk is full", "free space"],
         fix="Free space and rerun the same command; no temporary file is left."),
    dict(id="loss_blows_up", problem="a loss or gradient becomes NaN (learning rate 1e30)",
         kind="cli", argv=["{prepared_config}", "--workdir={workdir}",
                           "--config.performer.optimizer.learning_rate=1e30",
                           "--config.performer.num_epochs=2"], exit=1,
         words=["stage 'performer'", "step", "nan", "last good checkpoint"],
         fix="Lower the learning rate or set optimizer.grad_clip, in a new --workdir; check "
             "the inputs for NaN."),
    # --- in-process: data layer and functional API (ValueError) ---
    dict(id="images_wrong_shape", raises="ValueError", problem="images not [b,S,S,3]", kind="api", exit=None,
         words=["shape", "[b, S, S, 3]"], fix="Give square RGB images, channels last."),
    dict(id="images_wrong_dtype", raises="ValueError", problem="uint8 images", kind="api", exit=None,
         words=["dtype uint8", "float32"], fix="Normalise pixels to float32."),
    dict(id="images_nan", raises="ValueError", problem="NaN pixels in the data", kind="api", exit=None,
         words=["records [3, 5]", "NaN or Inf"], fix="Check those files and the preprocessing."),
    dict(id="concepts_shape_mismatch", raises="ValueError", problem="α and y_i of different shapes (functional API)",
         kind="api", exit=None, words=["explainer_output", "(4, 3)", "(4, 5)"],
         fix="Pass α and y_i as [B, n] arrays of one shape."),
    dict(id="nan_metric_not_written", raises="NonFiniteError (exit 1 in a run)", problem="a NaN metric (result file)", kind="api",
         exit=None, words=["prior.entropy", "nan", "not written"],
         fix="Find the NaN in the inputs or logs; the previous file is kept."),
    dict(id="damaged_feature_cache", problem="damaged feature-cache shard", kind="api",
         exit=None, words=[], fix="Nothing: a damaged cache is recomputed."),
    dict(id="damaged_result_npz", raises="DamagedFileError (exit 1 in a run)",
         problem="a truncated result .npz", kind="api", exit=None,
         words=["metrics_arrays.npz", "damaged", "delete it", "evaluate stage"],
         fix="Delete the file and rerun the stage that writes it."),
    dict(id="disk_full_result_file", raises="StorageError (exit 1 in a run)",
         problem="a full disk while writing a result file", kind="api", exit=None,
         words=["cannot write", "metrics.json", "disk is full", "free space"],
         fix="Free space and rerun the same command; the previous file is kept, no temporary "
             "file is left."),
]


def markdown_table(cases=CASES) -> str:
  """The troubleshooting table: problem | exit status | what the message names | what to do."""
  rows = ["| Problem | Exit | Message names | What to do |", "|---|---|---|---|"]
  for c in cases:
    code = c["exit"]
    code = ("/".join(map(str, code)) if isinstance(code, tuple) else
            c.get("raises", "—") if code is None else str(code))
    words = ", ".join(f"`{w}`" for w in c["words"]) or "—"
    rows.append(f"| {c['problem']} | {code} | {words} | {c['fix']} |")
  return "\n".join(rows)


if __name__ == "__main__":
  print(markdown_table())
