"""The ``automl-pt`` command line. Heavy modules (torch, transformers) are imported only inside
the commands that need them, so ``automl-pt --help`` and ``automl-pt plugins`` start instantly.

Exit codes: 0 ok, 1 a failure while running, 2 bad input (study file, data, backbone, model dir),
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import AutomlError, ConfigError


def _console(stderr: bool = False):
    """A rich console; when output is not a terminal (logs, pipes) tables get 140 columns
    instead of rich's default 80."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 140
    return Console(stderr=stderr, highlight=False, width=width)


_SHORT = {"learning_rate": "lr", "batch_size": "batch", "best_epoch": "best ep",
          "duration_s": "time", "strategy": "strategy", "trainable_pct": "trained %"}


def _table(frame, title: str | None = None):
    from rich.table import Table

    table = Table(title=title)
    for col in frame.columns:
        table.add_column(_SHORT.get(str(col), str(col)),
                         justify="right" if frame[col].dtype.kind in "fiu" else "left")
    for _, row in frame.iterrows():
        table.add_row(*[_fmt(v, str(c)) for c, v in zip(frame.columns, row.tolist())])
    return table


def _fmt(v: Any, column: str = "") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        if column in ("best_epoch", "epochs", "batch_size", "trial", "number") and v.is_integer():
            return str(int(v))
        if column == "duration_s":
            return f"{v:.0f}s"
        if column == "learning_rate" or (v != 0 and abs(v) < 1e-3):
            return f"{v:.1e}"
        return f"{v:.4f}"
    return str(v)


def _targets(task: Any, labels: list) -> str:
    """What a study predicts, for its first line: ``6 labels``, ``a number``."""
    if getattr(task, "kind", "classification") == "regression":
        return "a number per example"
    return f"{len(labels)} label{'s' if len(labels) != 1 else ''}"


def cmd_run(args: argparse.Namespace) -> int:
    from .engine.study import Study

    overrides: dict[str, Any] = {}
    if args.trials is not None:
        overrides.setdefault("study", {})["trials"] = args.trials
    if args.devices is not None:
        overrides.setdefault("resources", {})["devices"] = args.devices
    study = Study.from_config(args.study, **overrides)
    console = _console()
    prepared = study.prepare()
    console.print(f"[bold]automl-pt[/] study [cyan]{study.name}[/] → {study.run_dir}")
    d = prepared.data.describe()
    console.print(f"task {prepared.task.name}: {d['train']} train / {d['validation']} validation / "
                  f"{d['test']} test examples, {_targets(prepared.task, d['labels'])}; optimising "
                  f"{prepared.metric} ({prepared.direction})")
    results = study.run(progress=not args.quiet, console=console)
    board = results.leaderboard()
    console.print(_table(board.head(args.top), title=f"leaderboard ({prepared.metric}, validation)"))
    if results.test_metrics:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in results.test_metrics.items())
        console.print(f"[bold green]test[/] (best trial {results.study_row.get('best_trial')}): {scores}")
    footer = baseline_footer(results.baseline, results.test_metrics, prepared.metric)
    if footer:
        console.print(f"[bold]{footer}[/]")
    console.print(f"best model: {results.best_model_dir}\n"
                  f"  predict: automl-pt predict {results.best_model_dir} INPUT.csv\n"
                  f"  results: automl-pt results {study.run_dir}")
    return 0


def baseline_footer(baseline: dict | None, test: dict | None, metric: str) -> str:
    """``"WER 0.31 → 0.12 (pretrained → fine-tuned, test)"``: the study's metric before and
    after fine-tuning, on test where both were scored, else validation; ``""`` without a
    baseline."""
    if not baseline:
        return ""
    split = "test" if test and metric in (baseline.get("test") or {}) else "validation"
    before = (baseline.get(split) or {}).get(metric)
    after = (test or {}).get(metric) if split == "test" else None
    if before is None:
        return ""
    if after is None:
        return f"{metric.upper()} {before:.3f} before fine-tuning ({split})"
    return f"{metric.upper()} {before:.3f} → {after:.3f} (pretrained → fine-tuned, {split})"


def cmd_results(args: argparse.Namespace) -> int:
    from .engine.study import results as load

    if args.format == "parquet" and not args.output:
        raise ConfigError("--format parquet needs --output FILE")
    if args.output:
        _output_file(args.output, "--output")
    if args.sync:
        _sync(args.target)
    res = load(args.target)
    frame = res.trials() if args.all else res.leaderboard()
    if args.format == "table":
        console = _console()
        console.print(_table(frame.head(args.top) if not args.all else frame,
                             title=f"{res.study}: {res.metric} ({res.direction})"
                             + (" [from Optuna storage; DuckDB busy]" if res.source == "optuna" else "")))
        if res.test_metrics:
            console.print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in res.test_metrics.items()))
        footer = baseline_footer(res.baseline, res.test_metrics, res.metric)
        if footer:
            console.print(footer)
        return 0
    if args.format == "csv":
        out = frame.to_csv(index=False)
    elif args.format == "json":
        out = frame.to_json(orient="records", date_format="iso", indent=2)
    else:
        frame.to_parquet(args.output, index=False)
        return 0
    if args.output:
        Path(args.output).write_text(out)
    else:
        sys.stdout.write(out)
    return 0


def _sync(target: str) -> None:
    """Mirror every trial of the (possibly shared) Optuna storage into this machine's DuckDB."""
    from .storage.store import RESULTS_FILE, ResultStore
    from .core.paths import driver_running
    from .engine.study import Study

    path = Path(target)
    study = Study.from_config(path if path.is_file() else _study_file_of(path))
    if driver_running(study.run_dir):
        _console(stderr=True).print("a driver is running this study here; it keeps DuckDB in sync")
        return
    prepared = study.prepare()
    from .storage.rundir import claim_run_dir

    claim_run_dir(study.config)   # this machine's copy of the run directory, or a new one
    meta = study._meta(prepared)
    if not (study.run_dir / "study.json").exists():
        from .core.io import atomic_json

        atomic_json(study.run_dir / "study.json", meta)
    ostudy = study.optuna_study(prepared, heartbeat=False)
    from .storage.store import best_meta

    meta.update(best_meta(ostudy))
    ResultStore(study.run_dir / RESULTS_FILE).record_study(
        {**meta, "n_trials": len(ostudy.trials)}, ostudy, study.run_dir)


def cmd_worker(args: argparse.Namespace) -> int:
    """Standalone workers on this machine's devices against a shared (PostgreSQL) storage."""
    from .spec.config import load_config
    from .core.devices import device_slots, threads_per_slot

    overrides = {"resources": {"devices": args.devices}} if args.devices else None
    config = load_config(args.study, overrides=overrides)
    slots = device_slots(config.resources.devices, config.resources.trials_per_device)
    threads = threads_per_slot(slots, config.resources.num_threads)
    console = _console()
    console.print(f"automl-pt worker: study {config.study.name} on {', '.join(slots)} "
                  f"(storage {config.storage.optuna})")
    if len(slots) == 1:
        from .engine.worker import run_standalone

        ran = run_standalone(str(args.study), overrides, slots[0], threads, console=console)
        console.print(f"done: this worker ran {ran} trial(s)")
        return 0
    import multiprocessing

    from .engine.worker import run_standalone

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=run_standalone, args=(str(args.study), overrides, d, threads))
             for d in slots]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return max((p.exitcode or 0) for p in procs)


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import create_plugin_host

    host = create_plugin_host()
    rows = [{"name": p.name, "version": p.version, "module": p.module, "builtin": p.builtin,
             "hooks": p.hooks} for p in host.plugins]
    failed = [{"name": n, "error": e} for n, e in host.failed.items()]
    if args.json:
        print(json.dumps({"plugins": rows, "failed": failed}, indent=2))
        return 0
    from rich.table import Table

    table = Table(title="automl_pt plugins")
    for col in ("name", "version", "module", "hooks"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"] + (" (built-in)" if r["builtin"] else ""), r["version"], r["module"],
                      "\n".join(r["hooks"]))
    console = _console()
    console.print(table)
    for f in failed:
        console.print(f"[red]plugin {f['name']!r} failed to load:[/] {f['error']}")
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    from .plugins import create_plugin_host

    host = create_plugin_host()
    registry = host.registry
    modality = None
    if args.task:
        if args.task not in registry.tasks:
            from .registry import did_you_mean

            from .errors import ConfigError

            raise ConfigError(f"unknown task {args.task!r}{did_you_mean(args.task, list(registry.tasks))}; "
                              f"installed: {', '.join(sorted(registry.tasks))}")
        modality = registry.tasks[args.task].modality
    items = registry.list_backbones(args.pattern, modality)
    if args.json:
        print(json.dumps([{"name": b.name, "modality": b.modality, "parameters": b.parameters,
                           "source": b.source, "plugin": b.plugin} for b in items], indent=2))
        return 0
    from rich.table import Table

    table = Table(title="backbones (also: hf:ORG/NAME hub names and local folders)")
    for col in ("name", "modality", "parameters", "source", "plugin"):
        table.add_column(col)
    for b in items:
        table.add_row(b.name, b.modality, f"{b.parameters / 1e6:.1f}M" if b.parameters else "?",
                      b.source, b.plugin)
    _console().print(table)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict INPUT with the model in MODEL_DIR. Inputs are checked as the API checks them
    (:meth:`Predictor.predict`): a bad one is one error line, exit 2; a table without rows
    prints a warning (see :func:`main`) and writes an empty result."""
    from .errors import DataError
    from .export.predictor import load

    path = Path(args.input)
    if not path.exists():
        raise DataError(f"{path}: {'file' if path.suffix else 'file or folder'} not found")
    if args.output:
        _output_file(args.output, "--output")
    predictor = load(args.model_dir, device=_torch_device(args.device),
                     trust_remote_code=args.trust_remote_code)
    if getattr(args, "draw", None) and not getattr(predictor.task, "draws", False):
        raise DataError(f"--draw: the {predictor.task.name!r} model's predictions are not places in "
                        "its inputs; nothing to draw")
    options = {}
    for item in args.option or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE (e.g. num_beams=4)")
        options[key] = (int(value) if value.lstrip("-").isdigit() else
                        value.lower() == "true" if value.lower() in ("true", "false") else value)
    try:
        prediction = predictor.predict(path, batch_size=args.batch_size, progress=True, **options)
    except ValueError as exc:
        raise ConfigError(f"--option: {exc}") from exc
    if getattr(args, "draw", None):
        if not prediction.inputs:
            raise DataError("--draw needs input files (a file, a folder or a table of paths)")
        predictor.task.draw(prediction.inputs, prediction.labels, Path(args.draw))
    frame = prediction.to_frame()
    if args.output:
        out = Path(args.output)
        if out.suffix == ".jsonl":
            frame.to_json(out, orient="records", lines=True)
        elif out.suffix == ".parquet":
            frame.to_parquet(out, index=False)
        else:
            frame.to_csv(out, index=False)
    else:
        sys.stdout.write(frame.to_csv(index=False))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Without --format/--out: rebuild RUN_DIR/best from the best trial. With them: write the
    model (RUN_DIR/best, or TARGET itself when it is an exported model folder; rebuilt first if
    missing) in that format to --out (default RUN_DIR/export/FORMAT)."""
    from .export.predictor import MANIFEST
    from .storage.rundir import claim_run_dir
    from .engine.study import Study

    target = Path(args.target)
    if args.format != "native":   # an unknown format is refused before anything is rebuilt
        from .export.formats import check_format
        from .plugins import create_plugin_host

        check_format(create_plugin_host(), args.format)
    if args.format == "native" and args.out is None:
        if (target / MANIFEST).is_file():
            from .errors import ModelLoadError

            raise ModelLoadError(f"{target} is already an exported model; give --format or --out")
        model_dir = None
    elif (target / MANIFEST).is_file():
        model_dir = target
    else:
        study_file = target if target.is_file() else _study_file_of(target)
        config = Study.from_config(study_file).config
        claim_run_dir(config, create=False)   # RUN_DIR/export/FORMAT is written into it
        model_dir = config.run_dir / "best"
        if (model_dir / MANIFEST).is_file():
            return _export_format(model_dir, args)
        model_dir = None
    if model_dir is None:
        study = Study.from_config(target if target.is_file() else _study_file_of(target))
        claim_run_dir(study.config, create=False)   # before the Optuna storage is opened
        prepared = study.prepare()
        metrics = study.export(prepared, study.optuna_study(prepared, heartbeat=False))
        _console().print(f"exported {study.run_dir / 'best'}" + (f"; test {metrics}" if metrics else ""))
        if args.format == "native" and args.out is None:
            return 0
        model_dir = study.run_dir / "best"
    return _export_format(model_dir, args)


def _export_format(model_dir: Path, args: argparse.Namespace) -> int:
    from .export.formats import EXPORT_CONFIG, export_model

    out = export_model(model_dir, args.format, args.out)
    config = json.loads((out / EXPORT_CONFIG).read_text())
    check = config.get("max_abs_difference")
    _console().print(f"exported {model_dir} as {args.format} to {out}"
                     + (f" (max |logit difference| vs PyTorch {check:.1e})" if check is not None else "")
                     + f"; model card: {out / 'README.md'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """One self-contained HTML page (and PNGs of its plots) about a study."""
    from .report.html import build_report

    if args.out and Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: is a folder; give the HTML file to write")
    report = build_report(args.target, out=args.out, png=not args.no_png)
    console = _console()
    console.print(f"report: {report.html}")
    if report.pngs:
        console.print(f"plots:  {', '.join(p.name for p in report.pngs.values())} in {report.html.parent}")
    return 0


def cmd_label_efficiency(args: argparse.Namespace) -> int:
    """Test metric vs. labels per class (or the task's unit: examples, utterances...) from
    random / pretrained / continued-pretraining starts."""
    from .efficiency import label_efficiency

    target = Path(args.study)
    study_file = _study_file_of(target) if target.is_dir() else target
    starts = [s.strip() for s in args.starts.split(",") if s.strip()] if args.starts else None
    overrides = {"resources": {"devices": args.devices}} if args.devices else {}
    params = {}
    for item in args.param or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE, e.g. --param epochs=10")
        params[key.strip()] = _scalar(value.strip())
    report = label_efficiency(study_file, budgets=args.budgets.split(","), seeds=args.seeds,
                              starts=starts, out=args.out, progress=not args.quiet,
                              console=_console(stderr=True), params=params, **overrides)
    console = _console()
    summary = report.summary
    if len(summary):
        summary = summary.assign(mean=summary["mean"].round(4), std=summary["std"].round(4),
                                 min=summary["min"].round(4), max=summary["max"].round(4))
        if report.unit != "per_class":   # the column counts the task's unit, not labels per class
            summary = summary.rename(columns={"labels_per_class": report.noun.replace(" ", "_")})
        console.print(_table(summary, title=f"{report.metric} by start point and {report.noun}"))
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"plot: {report.png}\npage: {report.html}")
    return 0


def _output_file(path: str, flag: str) -> Path:
    """An output file a command may write: not a folder, in a folder that exists. Raises
    :class:`ConfigError`."""
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{flag} {out}: is a folder; give a file name")
    if not out.parent.is_dir():
        raise ConfigError(f"{flag} {out}: the folder {out.parent} does not exist")
    return out


def _torch_device(spec: str) -> str:
    """``spec`` when it names a device of this machine (cpu, cuda, cuda:N, mps...); else
    :class:`ConfigError`."""
    import torch

    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {spec!r}: not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ConfigError(f"--device {spec!r}: this machine has {count} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {spec!r}: MPS is not available on this machine")
    return spec


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _scalar(text: str) -> Any:
    """``"10"`` -> 10, ``"3e-4"`` -> 0.0003, ``"full"`` -> ``"full"``."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _study_file_of(run_dir: Path) -> Path:
    """The study file a run directory was run from. Raises :class:`ConfigError` when ``run_dir``
    is not a run directory or was run from Python."""
    meta = run_dir / "study.json"
    if not meta.is_file():
        raise ConfigError(f"{run_dir}: not a study file or run directory (no study.json)")
    try:
        source = json.loads(meta.read_text())["config"].get("source")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{meta}: not a study.json automl_pt wrote ({type(exc).__name__}: {exc})") from None
    if not source:
        raise ConfigError(f"{run_dir}: the study was not run from a file; export from Python")
    return Path(source)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="automl-pt", description="Fine-tune pretrained backbones on your data: Optuna search, "
        "DuckDB results, exported best model.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run or resume a study: automl-pt run studies/NAME.toml")
    p.add_argument("study", help="study file (TOML)")
    p.add_argument("--trials", type=int, help="override study.trials")
    p.add_argument("--devices", help="override resources.devices (auto | cpu | cuda | cuda:0,1)")
    p.add_argument("--top", type=_positive_int, default=10, help="leaderboard rows to show")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("results", help="leaderboard of a study (file or run directory)")
    p.add_argument("target", help="study file or run directory")
    p.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    p.add_argument("--output", "-o", help="write to this file")
    p.add_argument("--all", action="store_true", help="every trial with every column")
    p.add_argument("--top", type=_positive_int, default=20)
    p.add_argument("--sync", action="store_true",
                   help="first mirror every trial of the Optuna storage (all machines) into DuckDB")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("worker", help="run trials of a shared study on this machine's devices "
                       "(several machines, one PostgreSQL storage)")
    p.add_argument("study", help="study file (its [storage] optuna is a postgresql:// URL)")
    p.add_argument("--devices", help="override resources.devices on this machine")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("plugins", help="list plugins, versions and the hooks they implement")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("backbones", help="list catalog backbones")
    p.add_argument("pattern", nargs="?", help="name or wildcard pattern")
    p.add_argument("--task", help="only backbones for this task")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("predict", help="predict with an exported model: MODEL_DIR INPUT (a table "
                       ".csv|.jsonl|.parquet, a .txt file of texts, an image / audio file or folder)")
    p.add_argument("model_dir")
    p.add_argument("input")
    p.add_argument("--output", "-o", help="CSV / JSONL / Parquet file (default: CSV on stdout)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a prediction option of the model's task (repeatable), e.g. num_beams=4 (beam "
                        "search) or word_timestamps=true in speech recognition")
    p.add_argument("--draw", metavar="DIR",
                   help="also write each input file with its predictions drawn on it into DIR "
                        "(tasks whose predictions are places in the input, e.g. boxes)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let the backbone loader run code shipped in the model folder (transformers "
                        "auto_map); only for folders you trust. Nothing in a folder can turn it on")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="re-export the best trial of a study to RUN_DIR/best, or write "
                       "it in another format (--format)")
    p.add_argument("target", help="study file, run directory, or exported model folder")
    p.add_argument("--format", default="native",
                   help="native: RUN_DIR/best (default); hf: transformers save_pretrained; timm; "
                   "safetensors: the backbone library's folder; onnx; torchscript; or a format "
                   "a plugin registers")
    p.add_argument("--out", "-o", help="output folder (default: RUN_DIR/export/FORMAT)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="write one self-contained HTML report (and PNG plots) of a study")
    p.add_argument("target", help="study file or run directory")
    p.add_argument("--out", "-o", help="HTML file to write (default: RUN_DIR/report/report.html; "
                   "PNGs go next to it)")
    p.add_argument("--no-png", action="store_true", help="only the HTML page")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("label-efficiency", help="fine-tune with the study's best settings on 1, 4, "
                       "16... labels per class from random, pretrained and continued-pretraining "
                       "starts; plot the test metric (PNG + HTML)")
    p.add_argument("study", help="study file (TOML) or its run directory; the study must have run")
    p.add_argument("--budgets", default="1,4,16,all", help="labels per class, or examples where "
                   "the task counts examples (sentences, utterances...) (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per budget and start (default: %(default)s)")
    p.add_argument("--starts", help="comma-separated: random, pretrained, continued (default: all "
                   "three; continued only with a [pretrain] section)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="replace one of the best trial's hyperparameters (repeatable), "
                   "e.g. --param epochs=10")
    p.add_argument("--devices", help="override resources.devices (the first device is used)")
    p.add_argument("--out", "-o", help="folder for label-efficiency.png / .html "
                   "(default: RUN_DIR/label-efficiency)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_label_efficiency)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Exit codes: 0 ok; 2 bad input (an :class:`AutomlError` whose
    ``exit_code`` is 2, or a bad option: one ``error:`` line); 1 a failure of the tool; 130
    interrupted. automl_pt's warnings (:class:`~automl_pt.errors.DataWarning`) print as one
    ``warning:`` line each."""
    import warnings

    args = build_parser().parse_args(argv)
    shown = warnings.showwarning
    warnings.showwarning = _show_warning(shown)
    try:
        return int(args.func(args) or 0)
    except AutomlError as exc:
        from rich.markup import escape

        console = _console(stderr=True)
        problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        for problem in problems:  # a study file's problems one per line, like a compiler's
            console.print(f"[bold red]error:[/] {escape(problem)}", soft_wrap=True)
        if len(problems) > 1:
            console.print(f"{len(problems)} errors; nothing was run or written")
        return exc.exit_code
    except KeyboardInterrupt:
        _console(stderr=True).print("[yellow]interrupted[/]: run the same command again to resume")
        return 130
    finally:
        warnings.showwarning = shown


def _show_warning(default: Any) -> Any:
    """A ``warnings.showwarning`` printing :class:`DataWarning` as ``warning: MESSAGE`` on stderr
    (others as ``default`` does)."""
    from .errors import DataWarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if not issubclass(category, DataWarning):
            return default(message, category, filename, lineno, file, line)
        from rich.markup import escape

        _console(stderr=True).print(f"[yellow]warning:[/] {escape(str(message))}", soft_wrap=True)
        return None

    return show


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
