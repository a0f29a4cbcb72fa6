"""The catalogue of bad inputs: what goes wrong, what the run says, and what to do about it.

One list of dicts, used by ``tests/end_to_end/test_catalogue.py`` (which runs every case) and by
the table of docs/troubleshooting.md (``python tests/end_to_end/catalogue_cases.py`` prints it as
markdown).

Keys of a case:
  id: short name.
  problem: the mistake, in words.
  kind: "cli" (``launch/run.py`` as a subprocess), "api" (an in-process call, see
    ``test_catalogue.API_CASES``) or "elsewhere" (a case that needs a finished run, a study
    or a real signal: ``tested_in`` names the test, ``tests/FILE.py::test_name``, that runs
    it and asserts the exit status, the one ``error:`` line and the undisturbed rerun).
  argv: (cli) arguments after ``launch/run.py``. ``{workdir}`` is a fresh directory holding one
    unrelated file, ``{prepared}`` a copy of a workdir whose performer stage has finished,
    ``{empty}`` an empty directory, ``{file}`` a regular file.
  env: (cli) extra environment variables.
  damage: (cli) what is broken in the workdir before the run: "all_checkpoints",
    "metrics_json", "data_cache", "config_json_truncated", "config_json_replaced",
    "config_json_deleted" or "performer_checkpoints_deleted" (its done.json kept).
  config_file: (cli) text of a config file written to ``{config_file}`` (named
    ``config_name``, default "config_case.py").
  hold_lock: (cli) the test holds the workdir's lock while the run starts (another run).
  skip: a reason; the case waits for wiring in a file named there (it is not run).
  exit: expected exit status (a tuple: any of them); None for "api" cases, whose ``raises``
    names the exception ("—": the case recovers by itself).
  words: words the last line of stderr must contain (case-insensitive); for exit 0, words of
    stderr.
  repaired: (exit 0) files the run may rewrite, each back to its undamaged content.
  fix: what to do (the troubleshooting table's answer).
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
    dict(id="evals_num_resamples_zero", problem="no bootstrap resamples for the fidelity "
         "intervals", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.evals.fidelity.num_resamples=0"], exit=2,
         words=["evals.fidelity.num_resamples", ">= 1"], fix="Use num_resamples ≥ 1."),
    dict(id="evals_num_images_negative", problem="a negative number of scored test images",
         kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.evals.fidelity.num_images=-1"], exit=2,
         words=["evals.fidelity.num_images", ">= 0"], fix="Use num_images ≥ 0 (0 = all)."),
    dict(id="evals_top_k_zero", problem="no reasons per report image", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.evals.explainer.top_k=0"], exit=2,
         words=["evals.explainer.top_k", ">= 1"], fix="Use top_k ≥ 1."),
    dict(id="evals_ig_steps_zero", problem="integrated gradients with no steps", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.evals.fidelity.ig_steps=0"], exit=2,
         words=["evals.fidelity.ig_steps", ">= 1"], fix="Use ig_steps ≥ 1."),
    dict(id="sanity_without_prior", problem="the sanity check without the prior explainer it "
         "retrains", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.variants=baseline",
               "--config.evals.sanity.enabled=True"], exit=2,
         words=["evals.sanity.enabled=True", "'prior'", "explainer.variants"],
         fix="Add prior to explainer.variants, or set evals.sanity.enabled=False (nothing was "
             "recorded, so the corrected command is accepted)."),
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
         fix="Define get_config(arg) returning a ConfigDict built from "
             "xplain_jax.spec.config_base."),
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
    dict(id="config_file_missing_with_override",
         problem="config file that does not exist, with --config.FIELD overrides", kind="cli",
         argv=["--config=configs/nothere.py", "--workdir={workdir}", "--config.seed=1"], exit=2,
         words=["configs/nothere.py", "does not exist"], fix="Check the path of --config."),
    dict(id="extra_positional", problem="extra positional arguments", kind="cli",
         argv=[TINY, "--workdir={workdir}", "beta=0.5"], exit=2,
         words=["unexpected arguments", "beta=0.5", "--config.FIELD=VALUE"],
         fix="Pass settings as --config.FIELD=VALUE."),
    dict(id="unknown_flag", problem="unknown flag", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--beta=0.5"], exit=2,
         words=["Unknown command line flag", "beta", "usage"],
         fix="Only --config, --config.FIELD and --workdir are taken."),
    dict(id="override_without_value", problem="an override with no value", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer.beta"], exit=2,
         words=["--config.explainer.beta", "has no value", "=VALUE"],
         fix="Pass --config.FIELD=VALUE."),
    dict(id="block_as_value", problem="a whole config block set as one value", kind="cli",
         argv=[TINY, "--workdir={workdir}", "--config.explainer=3"], exit=2,
         words=["--config.explainer", "block of fields", "one by one"],
         fix="Set the block's fields one by one."),
    dict(id="config_twice", problem="--config given twice", kind="cli",
         argv=[TINY, TINY, "--workdir={workdir}"], exit=2,
         words=["--config", "2 times", "once"], fix="Give --config once."),
    dict(id="overrides_without_config", problem="overrides without --config", kind="cli",
         argv=["--workdir={workdir}", "--config.seed=1"], exit=2,
         words=["--config is required", "--config.FIELD"], fix="Add --config=FILE."),
    # --- workdir (exit 2) ---
    dict(id="workdir_under_a_file", problem="unwritable workdir (a path under a file)",
         kind="cli", argv=[TINY, "--workdir={file}/sub"], exit=2,
         words=["--workdir", "not writable"], fix="Choose a directory you can write to."),
    dict(id="workdir_not_utf8", problem="a workdir name that is not UTF-8", kind="cli",
         argv=[TINY, "--workdir={workdir}/caf\udce9"], exit=2,
         words=["--workdir", "not a valid UTF-8 name"],
         fix="Choose a UTF-8 name (nothing, not even a lock file, was written)."),
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
         repaired=["data/synthetic_attributes_v2_linear_train_32_64_0.npz"],
         fix="Nothing: a damaged cache is regenerated (identically)."),
    # --- checkpoints, results, numbers (exit 1) ---
    dict(id="all_checkpoints_damaged", problem="every checkpoint of a stage unreadable",
         kind="cli", argv=["{prepared_config}", "--workdir={prepared}"],
         damage="all_checkpoints", exit=1,
         words=["none of the checkpoints", "can be read", "backup", "new --workdir"],
         fix="Restore the checkpoint folder from a backup, or start in a new --workdir. (A "
             "damaged *newest* checkpoint alone is reported, moved aside and the previous one "
             "used.)"),
    dict(id="checkpoints_deleted_marker_kept",
         problem="a stage's checkpoints deleted, its done.json kept", kind="cli",
         argv=["{prepared_config}", "--workdir={prepared}", "--config.stages=explainer"],
         damage="performer_checkpoints_deleted", exit=1,
         words=["performer stage is marked finished", "checkpoints", "done.json"],
         fix="Restore the checkpoints, or delete the stage's done.json (named in the message) "
             "to train that stage again; it is never retrained silently."),
    dict(id="report_only_without_config_json",
         problem="a report-only run after config.json was deleted, with another config",
         kind="elsewhere", exit=1,
         tested_in="tests/end_to_end/test_reliability.py::"
                   "test_report_only_without_config_json_never_records_another_config",
         words=["no config.json or run identity", "restore config.json"],
         fix="Restore config.json (or rerun the evaluate stage with the config you mean); "
             "results are never relabelled with the command line's config."),
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
    dict(id="disk_full_checkpoint", problem="a full disk while orbax writes a checkpoint",
         kind="api", exit=None, raises="StorageError (exit 1 in a run)",
         words=["cannot write checkpoint", "disk is full", "rerun the same command"],
         fix="Free space and rerun the same command: it resumes from the previous checkpoint."),
    dict(id="disk_full_report_figures", problem="a full disk while writing report figures",
         kind="elsewhere", exit=1,
         tested_in="tests/end_to_end/test_reliability.py::"
                   "test_full_disk_while_writing_report_figures_is_one_line",
         words=["cannot write", ".png", "disk is full"],
         fix="Free space and rerun the same command."),
    dict(id="report_figures_a_file", problem="a file named figures where the report's "
         "figures folder goes", kind="elsewhere", exit=1,
         tested_in="tests/report/test_report_storage.py::test_figures_a_file_is_one_line",
         words=["cannot write", "figures", "a file stands where a folder"],
         fix="Move that file away and rerun the same command."),
    dict(id="report_html_a_folder", problem="a folder named report.html in the workdir",
         kind="elsewhere", exit=1,
         tested_in="tests/report/test_report_storage.py::test_report_html_a_folder_is_one_line",
         words=["cannot write", "report.html", "a folder of that name is in the way"],
         fix="Move that folder away and rerun the same command."),
    dict(id="report_figures_unwritable", problem="a figures folder without write permission",
         kind="elsewhere", exit=1,
         tested_in="tests/report/test_report_storage.py::"
                   "test_an_unwritable_figures_folder_is_one_line",
         words=["cannot write", ".png", "writable"],
         fix="Make the folder writable (chmod u+w) and rerun the same command."),
    dict(id="log_folder_unwritable", problem="a stage's log (TensorBoard) folder that cannot "
         "be written (no permission, or a file in its place)", kind="elsewhere", exit=1,
         tested_in="tests/train/test_logger_folders.py::"
                   "test_a_run_with_an_unwritable_variant_log_folder_stops_before_the_performer",
         words=["cannot write", "logs/explainer_prior"],
         fix="Make the folder named writable (or move the file away) and rerun the same "
             "command; the run stopped before training."),
    dict(id="interrupt_during_checkpoint_save", problem="Ctrl-C or SIGTERM during a run (a "
         "checkpoint save under way)", kind="elsewhere", exit=(130, 143),
         tested_in="tests/end_to_end/test_reliability.py::"
                   "test_ctrl_c_says_how_to_resume_and_resume_is_bit_identical",
         words=["interrupted", "rerun the same command to resume"],
         fix="Rerun the same command; it resumes bit for bit from the last checkpoint."),
    dict(id="sigterm_during_training", problem="SIGTERM while a stage trains (a preempted or "
         "cancelled job)", kind="elsewhere", exit=143,
         tested_in="tests/train/test_preemption.py::"
                   "test_sigterm_on_a_run_saves_and_the_rerun_ends_as_an_uninterrupted_one",
         words=["interrupted", "rerun the same command to resume"],
         fix="Rerun the same command: a checkpoint was saved after the step under way, so at "
             "most one step is redone."),
    dict(id="performer_trained_to_inf",
         problem="a performer whose parameters stay finite but whose outputs overflow",
         kind="cli", argv=["{prepared_config}", "--workdir={workdir}",
                           "--config.dataset.num_train=16",
                           "--config.performer.optimizer.learning_rate=1e30",
                           "--config.performer.optimizer.schedule=constant",
                           "--config.performer.optimizer.warmup_steps=0",
                           "--config.stages=performer,explainer"], exit=1,
         words=["stage 'performer'", "outputs", "NaN or Inf", "learning_rate"],
         fix="Lower the performer's learning rate or set its grad_clip, in a new --workdir "
             "(the stage is not marked finished)."),
    dict(id="beta_blows_up", problem="the prior loss weight β drives the explainer to NaN",
         kind="cli", argv=["{prepared_config}", "--workdir={workdir}",
                           "--config.explainer.beta=1e38", "--config.explainer.variants=prior",
                           "--config.stages=performer,explainer"], exit=1,
         words=["stage 'explainer_prior'", "nan", "explainer.beta", "alpha_scale"],
         fix="Lower explainer.beta (or the API's beta / alpha_scale) first, then the learning "
             "rate, in a new --workdir."),
    dict(id="loss_blows_up", problem="a loss or gradient becomes NaN (learning rate 1e30)",
         kind="cli", argv=["{prepared_config}", "--workdir={workdir}",
                           "--config.performer.optimizer.learning_rate=1e30",
                           "--config.performer.num_epochs=2"], exit=1,
         words=["stage 'performer'", "step", "nan", "last good checkpoint"],
         fix="Lower the learning rate or set optimizer.grad_clip, in a new --workdir; check "
             "the inputs for NaN."),
    # --- in-process: data layer and functional API (ValueError) ---
    dict(id="images_wrong_shape", raises="ValueError", problem="images not [b,S,S,3]", kind="api",
         exit=None, words=["shape", "[b, S, S, 3]"], fix="Give square RGB images, channels last."),
    dict(id="images_wrong_dtype", raises="ValueError", problem="uint8 images", kind="api",
         exit=None, words=["dtype uint8", "float32"], fix="Normalise pixels to float32."),
    dict(id="images_nan", raises="ValueError", problem="NaN pixels in the data", kind="api",
         exit=None, words=["records [3, 5]", "NaN or Inf"],
         fix="Check those files and the preprocessing."),
    dict(id="concepts_shape_mismatch", raises="ValueError",
         problem="α and y_i of different shapes (functional API)",
         kind="api", exit=None, words=["explainer_output", "(4, 3)", "(4, 5)"],
         fix="Pass α and y_i as [B, n] arrays of one shape."),
    dict(id="nan_metric_not_written", raises="NonFiniteError (exit 1 in a run)",
         problem="a NaN metric (result file)", kind="api",
         exit=None, words=["prior.entropy", "nan", "not written"],
         fix="Find the NaN in the inputs or logs; the previous file is kept."),
    dict(id="damaged_feature_cache", problem="damaged feature-cache shard", kind="api",
         exit=None, words=[], fix="Nothing: a damaged cache is recomputed."),
    dict(id="feature_cache_changed_in_place", problem="a feature-cache shard changed in place "
         "(same size, other bytes)", kind="elsewhere", exit=0,
         tested_in="tests/data/test_feature_cache_checksum.py::"
                   "test_the_split_is_recomputed_as_it_was",
         words=[], fix="Nothing: the shard's checksum differs, a warning names it, and the cache "
                       "is recomputed."),
    dict(id="damaged_result_npz", raises="DamagedFileError (exit 1 in a run)",
         problem="a truncated result .npz", kind="api", exit=None,
         words=["metrics_arrays.npz", "damaged", "delete it", "evaluate stage"],
         fix="Delete the file and rerun the stage that writes it."),
    dict(id="disk_full_result_file", raises="StorageError (exit 1 in a run)",
         problem="a full disk while writing a result file", kind="api", exit=None,
         words=["cannot write", "metrics.json", "disk is full", "free space"],
         fix="Free space and rerun the same command; the previous file is kept, no temporary "
             "file is left."),
    # --- studies (launch/study.py) ---
    dict(id="study_changed_set", problem="a study rerun with a changed --set after its runs "
         "finished", kind="elsewhere", exit=2,
         tested_in="tests/end_to_end/test_study_faults.py::"
                   "test_a_changed_set_is_refused_never_skipped",
         words=["was made with", "use another --workdir"],
         fix="Use another --workdir for the new values (or delete the named sub-workdir to "
             "redo that run); fields that decide no result (stages, data_dir) just rerun."),
    dict(id="study_set_of_an_axis", problem="--set of a field that is a study axis",
         kind="elsewhere", exit=2,
         tested_in="tests/end_to_end/test_study_faults.py::"
                   "test_study_command_line_is_checked_before_any_run",
         words=["sets a field of the study axis"],
         fix="Change the axis (--config.axes.NAME...) or drop the --set."),
    dict(id="study_misspelt_set", problem="--set of a field the run config lacks, or of the "
         "wrong type", kind="elsewhere", exit=2,
         tested_in="tests/end_to_end/test_study_faults.py::"
                   "test_study_command_line_is_checked_before_any_run",
         words=["has no field", "check the spelling"], fix="Check the field's spelling."),
    dict(id="study_set_refused_by_runs", problem="a --set value every run of the study would "
         "refuse (--set=dataset.rule=bogus), running or with --emit=slurm", kind="elsewhere",
         exit=2,
         tested_in="tests/study/test_commands_sets.py::"
                   "test_a_set_every_run_would_refuse_is_one_line_before_any_run",
         words=["would be refused", "dataset.rule", "no run was started"],
         fix="Fix the value named; nothing was run or written."),
    dict(id="study_cannot_finish", problem="study runs that cannot finish the table "
         "(stages without evaluate, a variant missing)", kind="elsewhere", exit=2,
         tested_in="tests/end_to_end/test_study_faults.py::"
                   "test_study_command_line_is_checked_before_any_run",
         words=["no run can finish"],
         fix="Include evaluate in stages and every variant the table reads."),
    dict(id="study_workdir_below_a_file", problem="a study workdir below a file, or not UTF-8",
         kind="elsewhere", exit=2,
         tested_in="tests/end_to_end/test_study_faults.py::"
                   "test_study_command_line_is_checked_before_any_run",
         words=["--workdir", "choose a"], fix="Choose a directory (a UTF-8 name)."),
    dict(id="study_interrupted", problem="Ctrl-C or SIGTERM on launch/study.py (or on its PID "
         "alone)", kind="elsewhere", exit=(130, 143),
         tested_in="tests/end_to_end/test_study_faults.py::"
                   "test_ctrl_c_on_a_study_stops_its_run_in_one_line",
         words=["interrupted", "rerun the same command"],
         fix="Rerun the same command; the running run got the signal and resumes."),
    dict(id="study_orphaned_run", problem="a run still running from a study that was killed "
         "(kill -9 of the study alone)", kind="elsewhere", exit=1,
         tested_in="tests/end_to_end/test_study_faults.py::"
                   "test_an_orphaned_run_is_named_and_counts_agree",
         words=["is still running", "wait for it to end or stop that process"],
         fix="Wait for that process (named) to end, or stop it; then rerun the study."),
    dict(id="study_disk_full", problem="a full disk while writing study.json / study.md",
         kind="elsewhere", exit=1,
         tested_in="tests/end_to_end/test_study_faults.py::"
                   "test_full_disk_while_writing_the_study_is_one_line",
         words=["cannot write", "disk is full"], fix="Free space and rerun the same command."),
    dict(id="paired_columns_bad_metric", problem="launch/study.py --pair with a misspelt or "
         "empty --metrics", kind="elsewhere", exit=2,
         tested_in="tests/study/test_paired.py::"
                   "test_study_py_pair_refusals_are_one_line_and_exit_2",
         words=["in no finished run's metrics.json", "did you mean"],
         fix="Pass dotted paths of numbers in metrics.json (the message names the closest)."),
    dict(id="paired_columns_a_is_b", problem="launch/study.py --pair with --a equal to --b",
         kind="elsewhere", exit=2,
         tested_in="tests/study/test_paired.py::"
                   "test_study_py_pair_refusals_are_one_line_and_exit_2",
         words=["--a and --b are both"], fix="Pass two different values of the field."),
    dict(id="paired_columns_odd_study_json", problem="launch/study.py --pair on a study.json "
         "of another shape", kind="elsewhere", exit=2,
         tested_in="tests/study/test_paired.py::"
                   "test_study_py_pair_refusals_are_one_line_and_exit_2",
         words=["study.json", "--aggregate-only"],
         fix="Rewrite it with launch/study.py --aggregate-only on the study's workdir."),
    dict(id="study_slurm_space_separated", problem="--emit=slurm with space-separated flags "
         "(--config X --set Z)", kind="elsewhere", exit=0,
         tested_in="tests/end_to_end/test_study_faults.py::"
                   "test_slurm_follow_ups_take_space_separated_flags",
         words=[], fix="Nothing: the follow-up jobs get --NAME=VALUE arguments."),
    dict(id="study_cut_off_in_report", problem="a study killed during a run's report stage",
         kind="elsewhere", exit=0,
         tested_in="tests/end_to_end/test_study_faults.py::"
                   "test_a_run_cut_off_in_its_report_is_not_finished",
         words=[], fix="Nothing: the rerun finishes that run, report included."),
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
