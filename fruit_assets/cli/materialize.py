"""``fruit-assets materialize``: the whole graph through Dagster, one Spark application for all of it.

Five seams: discover the classes (``_discover``), find that nothing changed since the last
publication (then no run and no Spark at all), reconcile the partitions with Training/ (new classes
registered, deleted ones removed, a mass deletion refused: ``_reconcile``), plan the runs
(``plan_runs``), run them in process (``_run_all``), print the summary (``_print_summary``).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass


@dataclass(frozen=True)
class PlannedRun:
    job_name: str
    key_range: tuple[str, str] | None = None  # partition range, for the partitioned jobs

    @property
    def label(self) -> str:
        if not self.key_range:
            return self.job_name
        first, last = self.key_range
        return f"{self.job_name} [{first}]" if first == last else f"{self.job_name} [{first} .. {last}]"

    @property
    def tags(self) -> dict[str, str]:
        if not self.key_range:
            return {}
        return {
            "dagster/asset_partition_range_start": self.key_range[0],
            "dagster/asset_partition_range_end": self.key_range[1],
        }


def plan_runs(selected: list[str], ordered: list[str], convert_model: bool, span: bool = False) -> list[PlannedRun]:
    """The runs, in order: the model's conversion when needed, one embedding run per contiguous
    block of ``selected`` in the instance's partition order (with ``span``, the changed classes
    found by the command itself: one run from the first to the last, the unchanged ones in between
    left as published), then one run of the PCA (fit on every class) and the projection of every
    class: a refit basis is never published beside rows of the previous one."""
    from fruit_assets.steps.run_ranges import contiguous_ranges, spanning_range

    blocks = spanning_range(selected, ordered) if span else contiguous_ranges(selected, ordered)
    return (
        ([PlannedRun("convert_model")] if convert_model else [])
        + [PlannedRun("embed_classes", r) for r in blocks]
        + [PlannedRun("fit_and_reduce", r) for r in contiguous_ranges(ordered, ordered)]
    )


def materialize(
    fruit_classes: list[str] | None, verbose: bool = False, quiet: bool = False, allow_mass_deletion: bool = False
) -> int:
    from fruit_assets.cli.console import (
        NORMAL,
        QUIET,
        VERBOSE,
        ProgressDisplay,
        Terminal,
        prepare_dagster_home,
        run_log_path,
    )

    verbosity = VERBOSE if verbose else QUIET if quiet else NORMAL
    home = prepare_dagster_home(say=lambda text: print(text) if verbosity >= NORMAL else None)
    with Terminal(verbosity, run_log_path(home)) as terminal:
        return _materialize(fruit_classes, terminal, ProgressDisplay(terminal), allow_mass_deletion)


def _materialize(fruit_classes, terminal, progress_display, allow_mass_deletion: bool = False) -> int:
    from fruit_assets.spark_jobs.session import (
        SparkDeployment,
        SparkSettings,
        launch_driver_jvm,
        stop_unused_driver_jvm,
    )

    # The JVM takes seconds to start: it starts now, beside Dagster's import and the change
    # detection, and the Spark application (with its event log) only once there is work for it.
    jvm_launch = ThreadPoolExecutor(1, thread_name_prefix="jvm-launch").submit(
        launch_driver_jvm, SparkSettings(master=SparkDeployment.from_environ().master)
    )
    try:
        return _materialize_after_launch(fruit_classes, terminal, progress_display, allow_mass_deletion, jvm_launch)
    finally:
        # A command that ran nothing (nothing changed, an error first) leaves no JVM behind.
        _wait_for(jvm_launch)
        stop_unused_driver_jvm()


def _wait_for(jvm_launch) -> None:
    try:
        jvm_launch.result()
    except Exception:  # noqa: BLE001 - only a head start: the context's own start reports the error
        pass


def _materialize_after_launch(fruit_classes, terminal, progress_display, allow_mass_deletion: bool, jvm_launch) -> int:
    # Imported here, after stderr is routed: Dagster, Spark and TensorFlow print as they load.
    from fruit_assets import progress
    from fruit_assets.errors import ConfigurationError
    from fruit_assets.resources.spark import lend_context

    started = time.perf_counter()
    try:
        settings = command_settings()
        _ = settings.engine  # an engine, precision or pair that cannot work: said before anything starts
    except ConfigurationError as error:
        terminal.error(str(error))
        return 2
    # The Spark application starts now, beside the discovery and the change detection (an
    # incremental run is mostly such fixed costs); if they find nothing to run, it is discarded,
    # event log and all: an application that ran nothing is nobody's history.
    context_started: Future = Future()
    spark_starting = ThreadPoolExecutor(1, thread_name_prefix="spark-start").submit(
        _start_spark, settings.master, settings.data_uri, jvm_launch, context_started.set_result
    )
    ran = False
    try:
        discovered = _discover(fruit_classes, terminal)
        if discovered is None:
            return 2
        layout, classes, selected, known = discovered
        as_published = _classes_as_published(layout, classes)
        unchanged_images = _unchanged_since_publication(layout, classes, as_published)
        if fruit_classes is None and unchanged_images is None:
            # Every class is looked at; only those whose images or model changed are embedded again.
            selected = [c for c in classes if as_published.get(c) is None]
        reconciled = _reconcile(layout, classes, known, terminal, allow_mass_deletion)
        if reconciled is None:
            return 2
        instance, new, gone = reconciled
        if unchanged_images is not None and not new and not gone:
            # What a publication killed after its switch left behind goes even when there is nothing to do.
            from fruit_assets.storage.versions import recover

            release_runs_of_dead_commands(instance)
            recover(layout.root)
            terminal.always(
                f"nothing changed since the last publication ({len(classes)} classes, {unchanged_images} "
                f"images): no run launched; the features are at {layout.reduced_features}"
            )
            return 0
        ran = True
        _warm_up_when_started(context_started, spark_starting)
        ordered = _apply_partitions(instance, layout, classes, selected, new, gone, terminal)
        runs = plan_runs(selected, ordered, _model_needs_building(layout), span=fruit_classes is None)
        # The runs draw their pictures with matplotlib: imported while Spark is still starting.
        from fruit_assets.assets.plots import load_plotting

        load_plotting()
        # One Spark application for the whole command: every run reuses it (and the model each
        # Python worker already built), from its first Spark job on: the first run starts meanwhile.
        progress.add_listener(progress_display)
        try:
            with lend_context(_context_of(spark_starting)):
                summary = _run_all(runs, instance, terminal, progress_display, allow_mass_deletion)
        finally:
            progress.remove_listener(progress_display)
            _stop(spark_starting)  # and its event log to <root>/spark-events/
    finally:
        if not ran:
            _discard(spark_starting)
    if summary is None:
        return 1
    _print_summary(terminal, summary, len(classes), len(selected), time.perf_counter() - started)
    return 0


@dataclass(frozen=True)
class CommandSettings:
    """The code location's settings this command plans with, resolved once; its runs read the same
    resources (through Dagster) and so the same variables."""

    data_uri: str
    master: str
    weights: str
    random_seed: int
    engine_setting: str
    precision_setting: str
    variance_target: str

    @property
    def engine(self) -> str:
        """The engine that runs the configured precision; ConfigurationError if there is none."""
        from fruit_assets.featurize.engines import engine_for

        return engine_for(self.engine_setting, self.precision_setting)

    @property
    def precision(self) -> str:
        from fruit_assets.featurize.engines import check_precision

        return check_precision(self.precision_setting)


def command_settings() -> CommandSettings:
    from fruit_assets.definitions import defs
    from fruit_assets.resources.env import resolved

    resources = defs.resources or {}
    model = resources["embedding_settings"]
    return CommandSettings(
        data_uri=resolved(resources["storage"].data_uri),
        master=resolved(resources["spark"].master),
        weights=resolved(model.weights),
        random_seed=model.random_seed,
        engine_setting=resolved(model.engine),
        precision_setting=resolved(model.precision),
        variance_target=resolved(resources["pca_settings"].variance_target),
    )


def _discover(fruit_classes, terminal):
    """(layout, the valid classes on Training/, the selected ones, (the instance, its registered
    classes, the known ones: registered or with outputs)); None after an error was shown. Folders
    skipped for their names are said and left out."""
    from dagster import DagsterInstance

    from fruit_assets.layout import DataLayout
    from fruit_assets.partitions import registered_classes
    from fruit_assets.steps.ghosts import known_classes
    from fruit_assets.steps.manifest import no_classes_error, training_folders
    from fruit_assets.storage import StorageError

    try:
        layout = DataLayout.at(command_settings().data_uri)
        instance = DagsterInstance.get()
        registered = registered_classes(instance)
        known = known_classes(layout, registered)
        classes, invalid = training_folders(layout, keep=known)
        for skipped in invalid:
            terminal.always(f"warning: class folder skipped under {layout.training}/ for its name: {skipped}")
        if not classes:
            raise no_classes_error(layout)
    except (StorageError, OSError) as error:
        terminal.error(str(error))
        return None
    selected = fruit_classes or classes
    unknown = sorted(set(selected) - set(classes))
    if unknown:
        terminal.error(f"no such class under {layout.training}: {', '.join(unknown)}")
        return None
    return layout, classes, selected, (instance, registered, known)


def _model_tag(layout) -> str | None:
    """ "engine/weights fingerprint" of the configured model, None if it was never converted here."""
    from fruit_assets.models import registry

    settings = command_settings()
    record = registry.find(layout, registry.weights_key(settings.weights, settings.random_seed))
    return None if record is None else f"{settings.engine}/{record.fingerprint}"


def _classes_as_published(layout, classes) -> dict[str, int | None]:
    """Per class, its images if they and the model are what its published rows were made from,
    else None (every class None when that cannot be told: the embedding step then keeps what
    still stands). Listings and small files, one pass."""
    from fruit_assets.steps.publication import classes_as_published
    from fruit_assets.storage import StorageError

    try:
        tag = _model_tag(layout)
        return dict.fromkeys(classes) if tag is None else classes_as_published(layout, classes, tag)
    except (StorageError, ValueError, KeyError):
        return dict.fromkeys(classes)


def _unchanged_since_publication(layout, classes, as_published: dict[str, int | None]) -> int | None:
    """Images in the published table if it is exactly what a run would publish now, else None."""
    from fruit_assets.pca import check_variance_target
    from fruit_assets.steps.publication import unchanged_since_publication
    from fruit_assets.storage import StorageError

    try:
        target = check_variance_target(command_settings().variance_target)
        return unchanged_since_publication(layout, classes, as_published, target)
    except (StorageError, ValueError, KeyError):
        return None  # the run itself reports what is wrong


def _reconcile(layout, classes, known, terminal, allow_mass_deletion: bool):
    """(instance, classes to register, classes gone from Training/: to deregister, and pca_model
    removes their outputs), or None after refusing a mass deletion (steps/classes.py's rule, the
    sensor's and pca_model's too)."""
    from fruit_assets.steps.classes import plan_classes

    instance, registered, published = known
    plan = plan_classes(classes, registered, published, allow_mass_deletion, layout.training)
    if plan.refused:
        terminal.error(f"{plan.refused} (fruit-assets materialize --allow-mass-deletion)")
        return None
    return instance, plan.to_register, plan.gone


def _apply_partitions(instance, layout, classes, selected, new, gone, terminal) -> list[str]:
    """Registers ``new``, deregisters ``gone``; every class in partition order."""
    from fruit_assets.partitions import fruit_class_partitions, registered_classes

    if new:
        instance.add_dynamic_partitions(fruit_class_partitions.name, new)
    registered = set(registered_classes(instance))
    for fruit_class in gone:
        if fruit_class in registered:
            instance.delete_dynamic_partition(fruit_class_partitions.name, fruit_class)
    terminal.say(
        f"{len(classes)} classes under {layout.training} ({len(new)} newly registered"
        + (f", {len(gone)} gone: {', '.join(gone[:5])}{', ...' if len(gone) > 5 else ''}" if gone else "")
        + f"); materializing {len(selected)}"
    )
    return registered_classes(instance)


def _run_all(
    runs: list[PlannedRun], instance, terminal, progress_display, allow_mass_deletion: bool = False
) -> dict[str, dict] | None:
    """Executes the runs in order; {asset: metadata} of their materializations, or None once one
    failed (its one-line reason shown)."""
    from fruit_assets.cli.console import VERBOSE
    from fruit_assets.definitions import defs

    # Dagster's event stream: at INFO on the terminal with --verbose, else all of it to the log file.
    log_level = "INFO" if terminal.verbosity >= VERBOSE else "DEBUG"
    run_config: dict[str, dict] = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if allow_mass_deletion:  # checked and said on the command line: pca_model may remove them
        # Run config replaces the resource's whole configuration: the root goes with the flag.
        data_uri = command_settings().data_uri
        run_config["resources"] = {"storage": {"config": {"data_uri": data_uri, "allow_mass_deletion": True}}}
    summary: dict[str, dict] = {}
    released = release_runs_of_dead_commands(instance)
    if released:
        terminal.say(
            f"marked {len(released)} run(s) of a fruit-assets command that died failed, freeing the "
            f"data root for this one: {', '.join(r[:8] for r in released)}"
        )
    owner = {OWNER_HOST_TAG: socket.gethostname(), OWNER_PID_TAG: str(os.getpid())}
    for number, run in enumerate(runs, 1):
        run_id = str(uuid.uuid4())
        terminal.say(f"[{number}/{len(runs)}] {run.label}  (run {run_id[:8]})")
        result = defs.resolve_job_def(run.job_name).execute_in_process(
            instance=instance, tags={**run.tags, **owner}, run_config=run_config, run_id=run_id, raise_on_error=False
        )
        progress_display.close()
        if not result.success:
            terminal.error(f"run {result.run_id} of {run.job_name} failed: {_failure_message(result)}")
            terminal.error(f"run log: {terminal.log_path}")
            return None
        summary.update(_materializations(result))
    return summary


# Runs this command executes in its own process carry it: a run whose process is gone (killed,
# out of memory) cannot finish, yet would hold its pool slot, and so the data root, for ever.
OWNER_HOST_TAG = "fruit_assets/command_host"
OWNER_PID_TAG = "fruit_assets/command_pid"


def release_runs_of_dead_commands(instance) -> list[str]:
    """Marks failed the unfinished runs of fruit-assets commands on this machine whose process is
    gone, and frees their concurrency slots; returns their ids. (Runs of `dagster dev` and of the
    Kubernetes launcher are run monitoring's.)"""
    import psutil
    from dagster import DagsterRunStatus, RunsFilter

    unfinished = instance.get_runs(
        RunsFilter(
            statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED],
            tags={OWNER_HOST_TAG: socket.gethostname()},
        )
    )
    released = []
    for run in unfinished:
        pid = int(run.tags.get(OWNER_PID_TAG, "0"))
        if pid and pid != os.getpid() and not psutil.pid_exists(pid):
            instance.report_run_failed(run, f"the fruit-assets command (pid {pid}) that ran it is gone")
            # No public API frees a dead run's pool slots in Dagster 1.13 (run monitoring does it
            # for runs it launched, not for this process's execute_in_process runs).
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            released.append(run.run_id)
    return released


def _print_summary(
    terminal, summary: dict[str, dict], num_classes: int, num_embedded_classes: int, seconds: float
) -> None:
    from fruit_assets.cli.console import VERBOSE

    embeddings = summary.get("image_embeddings", {})
    pca = summary.get("pca_model", {})
    reduced = summary.get("reduced_features", {})
    say = terminal.always
    say("\nsummary")
    say(
        f"  classes              {num_classes}"
        + (
            f" ({num_classes - num_embedded_classes} unchanged since their publication: not embedded again)"
            if num_embedded_classes < num_classes
            else ""
        )
    )
    if embeddings:
        say(
            f"  images               {reduced.get('run_num_images')} published; in the embedded classes "
            f"{embeddings.get('run_num_images')} ({embeddings.get('run_num_embedded')} embedded, "
            f"{embeddings.get('run_num_quarantined')} quarantined)"
        )
        moved = embeddings.get("run_num_moved") or 0
        say(
            f"  embedding            {embeddings.get('run_num_featurized')} featurized now, {embeddings.get('run_num_reused')} reused"
            + (f" ({moved} found by content under another path)" if moved else "")
            + f", {embeddings.get('images_per_second')} images/s ({embeddings.get('inference_engine')})"
        )
        if embeddings.get("run_num_featurized") and "executor_cpu_seconds" in embeddings:
            say(f"  embedding CPU        {_cpu_line(embeddings)}")
    else:
        say(f"  images               {reduced.get('run_num_images')} published")
        say("  embedding            0 featurized now: no class changed")
    say(
        f"  PCA k                {pca.get('k')} (explained variance {pca.get('explained_variance')}, "
        f"target {pca.get('variance_target')})"
    )
    say(f"  reduced features     {reduced.get('output_path')}")
    say(f"  total time           {seconds:.1f} s")
    if terminal.verbosity < VERBOSE:
        say(f"  run log              {terminal.log_path}")


def _cpu_line(embeddings: dict) -> str:
    """The featurization's executor CPU-seconds (Python workers + JVM) and images per CPU-second,
    from the embedding asset's metadata."""

    def figure(key: str) -> str:
        value = embeddings.get(key)
        return "?" if value is None else f"{value:.1f}"

    rate = embeddings.get("images_per_cpu_second")
    return (
        f"{figure('executor_cpu_seconds')} CPU-s on the executors (Python {figure('python_cpu_seconds')}, "
        f"JVM {figure('jvm_cpu_seconds')}), {'?' if rate is None else f'{rate:.2f}'} images per CPU-second"
    )


def _materializations(result) -> dict[str, dict]:
    """{asset: the metadata that describes the run}: of a partitioned asset, the one partition's
    event that carries the run's figures (assets/metadata.py; Dagster does not write a run's
    partitions in order); of another, its materialization."""
    from fruit_assets.assets.metadata import RUN_FIGURES_MARK

    out = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        metadata = {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}
        name = materialization.asset_key.to_user_string()
        if name not in out or RUN_FIGURES_MARK in metadata:
            out[name] = metadata
    return out


def _failure_message(result) -> str:
    # A failed blocking check (the fidelity gate) stops the run with Dagster's own multi-line
    # error; the check's description is the line that says what to do.
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.description:
            return evaluation.description
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            return f"{data.error.cls_name}: {data.error.message.strip()} (stack trace in the run log)"
    return "see the run log"


def _model_needs_building(layout) -> bool:
    """embedding_model runs when the configured weights have no converted model yet (first run,
    new weights), or when a reduced precision has no fidelity figures for this dataset's classes
    yet: the asset records the conversion, its parity check and the gate. Otherwise it is skipped,
    so an incremental run never imports TensorFlow."""
    from fruit_assets.featurize.engines import FP32, TENSORFLOW
    from fruit_assets.models import registry
    from fruit_assets.models.build import stored_gate_holds

    settings = command_settings()
    if settings.engine == TENSORFLOW:
        return False
    record = registry.find(layout, registry.weights_key(settings.weights, settings.random_seed))
    if record is None or registry.read_model(layout, record) is None:
        return True
    if settings.precision == FP32:
        return False
    gate = registry.find_fidelity(layout, record.fingerprint, settings.precision)
    return gate is None or not stored_gate_holds(layout, gate)


def _context_of(spark_starting: Future) -> Future:
    """A Future of the SparkContext the starting resource builds (or of the reason it could not)."""
    context: Future = Future()

    def resolve(started: Future) -> None:
        try:
            context.set_result(started.result().get_context())
        except BaseException as error:  # noqa: BLE001 - handed to the run that asks for Spark
            context.set_exception(error)

    spark_starting.add_done_callback(resolve)
    return context


def _stop(spark_starting: Future) -> None:
    """Stops the command's Spark application, if it started (the run that needed it reported why not)."""
    try:
        spark = spark_starting.result()
    except Exception:  # noqa: BLE001 - see above
        return
    spark.stop_application()


def _discard(spark_starting) -> None:
    """The command runs nothing: its Spark application goes, with its event log."""
    try:
        spark_starting.result().discard_application()
    except Exception:  # noqa: BLE001 - the command's own outcome is what matters
        pass


def _warm_up_when_started(context_started: Future, spark_starting: Future) -> None:
    """Starts the Python workers (one per task slot, what the embedding imports loaded) as soon as
    the SparkContext runs, in the background, while the first run starts: its first Spark job then
    finds them ready."""
    import threading
    from concurrent.futures import FIRST_COMPLETED, wait

    from fruit_assets.spark_jobs.session import warm_up_workers

    def warm():
        wait([context_started, spark_starting], return_when=FIRST_COMPLETED)
        if not context_started.done():
            return  # the start failed before the context: the runs report it
        try:
            warm_up_workers(context_started.result())
        except Exception:  # noqa: BLE001 - only a head start: the real jobs start workers anyway
            pass

    threading.Thread(target=warm, name="spark-warm-up", daemon=True).start()


def _start_spark(master: str, data_uri: str, jvm_launch=None, on_context=None):
    """The Spark resource with its context started, on the JVM ``jvm_launch`` started (``on_context``:
    see build_spark_context). The runs find the context and reuse it; the command stops it."""
    from fruit_assets.layout import DataLayout
    from fruit_assets.resources.spark import SparkResource

    if jvm_launch is not None:
        _wait_for(jvm_launch)
    spark = SparkResource(master=master, data_uri=DataLayout.at(data_uri).root)
    # The runs may already be waiting for this start's context (lent as a Future when the JVM is
    # slow to launch, as when it records the class archive): it must not wait for that Future itself.
    spark.get_context(on_context, borrow=False)
    return spark
