use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use segstream::one_line;
use segstream::pipeline::{self, Overrides, Pipeline, RunOptions};
use segstream::runtime::Control;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

mod cli;

use cli::status;

/// Real-time video segmentation: GStreamer in, ONNX Runtime models, video and label maps out.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log level: error, warn, info, debug or trace (RUST_LOG overrides).
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline file until its input ends (or Ctrl-C).
    Run {
        /// The pipeline file, e.g. pipelines/file_to_mp4.toml.
        pipeline: PathBuf,
        /// Replace the pipeline's source: a file, a URI, rtsp://..., /dev/videoN or test:PATTERN.
        #[arg(long)]
        input: Option<String>,
        /// Replace the path of the first mp4 or png sink.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Stop after this many frames.
        #[arg(long)]
        frames: Option<u64>,
        /// ONNX Runtime threads for every infer stage (0 lets ONNX Runtime choose).
        #[arg(long)]
        threads: Option<usize>,
        /// Score the label maps against the source's ground truth (synthetic sources) and
        /// print mean IoU, pixel accuracy and Dice with the summary.
        #[arg(long)]
        eval: bool,
        /// Seconds between status lines (frames, FPS, drops, latency p50/p95/p99); a
        /// progress bar instead when stderr is a terminal; 0 turns both off.
        #[arg(long, default_value_t = 5.0)]
        status_interval: f64,
        /// Serve Prometheus metrics at http://ADDRESS/metrics, e.g. 127.0.0.1:9464.
        #[arg(long, value_name = "ADDRESS")]
        metrics: Option<String>,
        /// With many input files: run shard I of N (files whose stable hash falls in it);
        /// JOB_COMPLETION_INDEX and JOB_COMPLETIONS give it in a Kubernetes Indexed Job.
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// With many input files: redo files whose outputs are already complete.
        #[arg(long)]
        force: bool,
        /// With many input files: where the run summary goes (default: batch.json in the
        /// outputs' folder).
        #[arg(long, value_name = "PATH")]
        summary: Option<PathBuf>,
    },
    /// Measure a pipeline: end-to-end FPS and latency, each stage's busy time, the
    /// bottleneck, and the model alone in the same process.
    Bench {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Replace the pipeline's source (as for `run`).
        #[arg(long)]
        input: Option<String>,
        /// Frames to measure, after the warm-up (with many input files, every frame of
        /// every file is run and measured after the warm-up).
        #[arg(long, default_value_t = 100)]
        frames: u64,
        /// Frames processed first and not measured.
        #[arg(long, default_value_t = 10)]
        warmup: u64,
        /// Replay frames decoded beforehand from memory, so decoding is excluded.
        #[arg(long)]
        from_memory: bool,
        /// Passes of the model-only loop.
        #[arg(long, default_value_t = 20)]
        model_runs: usize,
        /// ONNX Runtime threads for every infer stage.
        #[arg(long)]
        threads: Option<usize>,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write the per-stage figures as CSV to this file.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Also score accuracy against the source's ground truth (as `run --eval`).
        #[arg(long)]
        eval: bool,
        /// Model configs (names or paths) to compare in place of the first infer stage's
        /// model; prints one "FPS per model" table.
        #[arg(long, num_args = 1..)]
        models: Vec<String>,
        /// Execution providers to sweep, e.g. cpu,cuda; one that cannot load is reported as
        /// unavailable.
        #[arg(long, value_enum, value_delimiter = ',')]
        providers: Vec<cli::compare::ProviderKind>,
        /// Precisions to sweep, e.g. fp32,fp16,bf16,int8 (fp16 and int8: the NAME_fp16.toml
        /// and NAME_int8.toml variants of a model; bf16: OpenVINO's BF16 inference precision).
        #[arg(long, value_enum, value_delimiter = ',')]
        precision: Vec<cli::compare::Precision>,
        /// Also rows for the first model and provider with tiling, at half scale and with the
        /// CRF refine stage (with --eval: what each costs or buys in mean IoU).
        #[arg(long)]
        ablations: bool,
        /// Where pre- and post-processing run, e.g. host,serial,graph (host: overlapped with
        /// the model where it can be; serial: `overlap = false`; graph: ONNX graphs on the
        /// session's execution provider, `pre_post = "graph"`; graph-nv12: the same with the
        /// frames going in as NV12 planes, with --from-memory); one row each.
        #[arg(long, value_enum, value_delimiter = ',')]
        pre_post: Vec<cli::compare::PrePostKind>,
        /// Rounds over the compared rows, interleaved (A B A B); each row reports its
        /// median-FPS round.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
        rounds: u64,
    },
    /// Score predictions against ground truth: label maps (per-class IoU and Dice, mean
    /// IoU, pixel accuracy), instances (COCO mask AP) or panoptic maps (PQ, SQ, RQ).
    Eval {
        /// Directory of predicted 8-bit label PNGs (as the png sink writes them).
        #[arg(long, requires = "truth")]
        pred: Option<PathBuf>,
        /// Directory of ground-truth label PNGs with the same file names.
        #[arg(long, requires = "pred")]
        truth: Option<PathBuf>,
        /// Predicted instances: JSONL as the jsonl sink writes it (one line per frame).
        #[arg(long, requires = "coco_truth")]
        instances: Option<PathBuf>,
        /// COCO instances file (RLE segmentations) to score `--instances` against.
        #[arg(long, requires = "instances")]
        coco_truth: Option<PathBuf>,
        /// Directory of predicted 16-bit panoptic PNGs (class * 1000 + instance, 65535 void).
        #[arg(long, requires = "panoptic_truth")]
        panoptic_pred: Option<PathBuf>,
        /// Directory of ground-truth panoptic PNGs with the same file names.
        #[arg(long, requires = "panoptic_pred")]
        panoptic_truth: Option<PathBuf>,
        /// Thing classes for panoptic quality, e.g. 11,12,13; by default the classes seen
        /// with an instance id other than 0.
        #[arg(long, value_delimiter = ',')]
        thing_classes: Option<Vec<u16>>,
        /// How frames meet COCO images: `id` (image id = frame seq) or `file-name` (the
        /// image named by the seq, as 000012.png).
        #[arg(long, value_enum, default_value_t = segstream::eval::coco::MatchBy::Id)]
        match_by: segstream::eval::coco::MatchBy,
        /// Model config (name or path) whose classes to report; 19 unnamed classes otherwise.
        #[arg(long)]
        model: Option<String>,
        /// Number of classes, when no model is given.
        #[arg(long)]
        classes: Option<usize>,
        /// Ground-truth value that marks pixels not to count.
        #[arg(long, default_value_t = 255)]
        ignore: u8,
        /// Ground truth holds Cityscapes labelIds (mapped to the 19 training ids).
        #[arg(long)]
        cityscapes_ids: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Take files from a NATS JetStream work queue and run each through a pipeline (its
    /// source is replaced by the queue); each message is acknowledged once the file's outputs
    /// are in place.
    Worker {
        /// The pipeline file; every output path needs {name}.
        pipeline: PathBuf,
        /// The queue: nats://HOST[:PORT]/SUBJECT.
        #[arg(long)]
        queue: String,
        #[command(flatten)]
        names: QueueNames,
        /// Seconds a message waits for its acknowledgement before another worker gets it.
        #[arg(long, default_value_t = 60.0)]
        ack_wait_s: f64,
        /// Deliveries of one message before JetStream gives up on it.
        #[arg(long, default_value_t = 5)]
        max_deliveries: i64,
        /// End once the queue has been empty this many seconds (default: wait forever).
        #[arg(long)]
        idle_exit_s: Option<f64>,
        /// Files decoded at once.
        #[arg(long, default_value_t = 1)]
        files_in_flight: usize,
        /// ONNX Runtime threads for every infer stage.
        #[arg(long)]
        threads: Option<usize>,
        /// Seconds between status lines; 0 turns them off.
        #[arg(long, default_value_t = 30.0)]
        status_interval: f64,
        /// Serve Prometheus metrics at http://ADDRESS/metrics.
        #[arg(long, value_name = "ADDRESS")]
        metrics: Option<String>,
        /// Also write the summary of the files it did to this file.
        #[arg(long, value_name = "PATH")]
        summary: Option<PathBuf>,
    },
    /// Publish files (a folder, a glob, @list.txt or files) on a NATS JetStream work queue
    /// for `worker`s, one message per file.
    Enqueue {
        /// The queue: nats://HOST[:PORT]/SUBJECT.
        #[arg(long)]
        queue: String,
        #[command(flatten)]
        names: QueueNames,
        /// Folders, globs, @list.txt files or files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Check a pipeline file, its model configs and ONNX files without running anything.
    Validate {
        /// The pipeline file.
        pipeline: PathBuf,
        /// As for `run`.
        #[arg(long)]
        input: Option<String>,
        /// As for `run`.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// The JetStream names `worker` and `enqueue` share.
#[derive(clap::Args)]
struct QueueNames {
    /// The JetStream stream holding the subject (created as a work queue when missing).
    #[arg(long, default_value = "SEGSTREAM")]
    stream: String,
}

/// The signal that stopped a run, as an exit code (128 + its number), or `otherwise`.
fn exit_code(stopped_by: &AtomicI32, interrupted: bool, otherwise: ExitCode) -> ExitCode {
    if !interrupted {
        return otherwise;
    }
    // 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP, as shells expect.
    let signal = stopped_by.load(Ordering::Relaxed);
    ExitCode::from(
        128 + if signal > 0 {
            signal as u8
        } else {
            SIGINT as u8
        },
    )
}

/// A run's control with the signal handler installed (the signal that stops it is kept for
/// the exit code) and, with `--metrics`, the endpoint serving it; `None` after printing why
/// the endpoint cannot start.
fn start_control(
    metrics: Option<String>,
) -> Option<(
    Arc<Control>,
    Arc<AtomicI32>,
    Option<cli::exporter::Exporter>,
)> {
    let control = Arc::new(Control::default());
    let stopped_by = Arc::new(AtomicI32::new(0));
    if let Err(e) = on_signals(control.clone(), stopped_by.clone()) {
        tracing::warn!("Cannot install the signal handler: {e}.");
    }
    match metrics
        .map(|a| cli::exporter::Exporter::serve(&a, control.clone()))
        .transpose()
    {
        Ok(exporter) => Some((control, stopped_by, exporter)),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            None
        }
    }
}

/// The class names of `--model`, or none; an error is printed.
fn model_names(model: Option<&str>) -> Result<Vec<String>, ()> {
    let Some(m) = model else {
        return Ok(Vec::new());
    };
    match segstream::infer::resolve_model(Path::new("eval"), m) {
        Ok(model) => Ok(model.config.classes.names),
        Err(problems) => {
            eprintln!("error: --model {m}: {}", problems.join("; "));
            Err(())
        }
    }
}

/// Writes each text to its path, when one was asked for.
fn write_outputs<const N: usize>(outputs: [(Option<PathBuf>, String); N]) -> ExitCode {
    for (path, text) in outputs {
        if let Some(path) = path {
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Prints eval's result as a table or JSON, or its error as one line.
fn print_metrics<M: std::fmt::Display + serde::Serialize>(
    metrics: Result<M, segstream::eval::EvalError>,
    json: bool,
) -> ExitCode {
    match metrics {
        Ok(m) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&m).expect("metrics serialize")
            );
            ExitCode::SUCCESS
        }
        Ok(m) => {
            println!("{m}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Flags that no pipeline file checks: the status interval and the thread override.
fn check_flags(status_interval: f64, threads: Option<usize>) -> Result<(), String> {
    if !(0.0..=86_400.0).contains(&status_interval) {
        return Err(format!(
            "--status-interval {status_interval} is out of range (expected 0 to 86400 seconds)"
        ));
    }
    let cores = segstream::infer::cores();
    match threads {
        Some(n) if n > segstream::infer::MAX_THREADS => Err(format!(
            "--threads {n} is out of range (expected 0 to {}; counts above this machine's \
             {cores} cores are capped to {cores})",
            segstream::infer::MAX_THREADS
        )),
        _ => Ok(()),
    }
}

/// `--threads` capped to the cores, with a warning.
fn cap_threads(threads: Option<usize>) -> Option<usize> {
    let cores = segstream::infer::cores();
    threads.map(|n| {
        if n > cores {
            tracing::warn!(
                "--threads {n} is more than the {cores} cores this machine runs at once: \
                 capped to {cores}."
            );
        }
        n.min(cores)
    })
}

/// Stops the run on SIGINT, SIGTERM or SIGHUP (finishing the frames in flight and finalizing
/// every output), remembering which signal it was; a second signal exits at once.
fn on_signals(control: Arc<Control>, stopped_by: Arc<AtomicI32>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("segstream-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if control.stop_requested() {
                    eprintln!("segstream: second signal, exiting without finalizing outputs");
                    std::process::exit(128 + signal);
                }
                eprintln!(
                    "segstream: stopping; finishing frames in flight (signal again to quit at once)"
                );
                stopped_by.store(signal, Ordering::Relaxed);
                control.request_stop();
            }
        })?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    match cli.command {
        Command::Run {
            pipeline,
            input,
            output,
            frames,
            threads,
            eval,
            status_interval,
            metrics,
            shard,
            force,
            summary,
        } => {
            if let Err(e) = check_flags(status_interval, threads) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            let threads = cap_threads(threads);
            let overrides = Overrides {
                input,
                output,
                eval,
            };
            let pipeline = match Pipeline::load(&pipeline, &overrides) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {}", one_line(&e));
                    return ExitCode::FAILURE;
                }
            };
            let Some((control, stopped_by, _exporter)) = start_control(metrics) else {
                return ExitCode::FAILURE;
            };
            let mut options = RunOptions {
                frames,
                threads,
                ..RunOptions::default()
            };
            let many = pipeline.many();
            let batch = match &many {
                Some(items) => {
                    let shard = match shard.as_deref().map(cli::batch::Shard::parse) {
                        Some(s) => s.map(Some),
                        None => cli::batch::Shard::from_env(),
                    };
                    let shard = match shard {
                        Ok(s) => s,
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::FAILURE;
                        }
                    };
                    let plan = cli::batch::plan(&pipeline, items, shard, force);
                    if let Some(s) = shard {
                        eprintln!("shard {s}: {} of the {} files", plan.in_shard, items.len());
                    }
                    if !plan.skipped.is_empty() {
                        eprintln!(
                            "skipping {} file(s) whose outputs are complete (--force redoes them)",
                            plan.skipped.len()
                        );
                    }
                    options.chosen = Some(plan.chosen.clone());
                    let path = summary
                        .clone()
                        .unwrap_or_else(|| cli::batch::default_summary_path(&pipeline, shard));
                    Some((plan, path))
                }
                None if shard.is_some() || summary.is_some() => {
                    eprintln!(
                        "error: --shard and --summary need many input files (a folder, a glob \
                         or @list.txt)"
                    );
                    return ExitCode::FAILURE;
                }
                None => None,
            };
            let status = (status_interval > 0.0).then(|| {
                // Live sources drop frames: the output does not reach the frame limit.
                let limit = frames.filter(|_| !pipeline.is_live() && batch.is_none());
                status::spawn(control.clone(), status_interval, limit)
            });
            let result = pipeline::run(&pipeline, &options, control.clone());
            if let Some(status) = status {
                status.finish();
            }
            match result {
                Ok(report) => {
                    eprintln!("{report}");
                    if let Some((now, peak)) = segstream::runtime::memory() {
                        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
                        eprintln!("memory: peak {:.1} MiB, now {:.1} MiB", mib(peak), mib(now));
                    }
                    let mut failed_files = 0;
                    match &batch {
                        None => {
                            for path in pipeline.outputs() {
                                println!("output: {}", path.display());
                            }
                        }
                        Some((plan, path)) => {
                            let summary = cli::batch::summarize(
                                &pipeline,
                                many.as_deref().unwrap_or_default(),
                                plan,
                                &control.streams.records(),
                                report.wall.as_secs_f64(),
                            );
                            eprintln!("{summary}");
                            if let Err(e) = summary.write(path) {
                                eprintln!(
                                    "error: cannot write the summary {}: {e}",
                                    path.display()
                                );
                                return ExitCode::FAILURE;
                            }
                            println!("summary: {}", path.display());
                            failed_files = summary.failed;
                        }
                    }
                    let otherwise = if failed_files > 0 {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    };
                    exit_code(&stopped_by, report.interrupted, otherwise)
                }
                Err(e) => {
                    eprintln!("error: {}", one_line(&e));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench {
            pipeline,
            input,
            frames,
            warmup,
            from_memory,
            model_runs,
            threads,
            json,
            csv,
            eval,
            models,
            providers,
            precision,
            ablations,
            pre_post,
            rounds,
        } => {
            if let Err(e) = check_flags(0.0, threads) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            let threads = cap_threads(threads);
            let overrides = Overrides {
                input,
                eval,
                ..Overrides::default()
            };
            let pipeline = match Pipeline::load(&pipeline, &overrides) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {}", one_line(&e));
                    return ExitCode::FAILURE;
                }
            };
            let options = cli::bench::BenchOptions {
                frames,
                warmup,
                from_memory,
                nv12: false,
                model_runs,
                threads,
            };
            if !(models.is_empty()
                && providers.is_empty()
                && precision.is_empty()
                && pre_post.is_empty()
                && !ablations)
            {
                let sweep = cli::compare::Sweep {
                    models,
                    providers,
                    precisions: precision,
                    ablations,
                    pre_post,
                    rounds: rounds as usize,
                };
                let comparison = match cli::compare::compare(&pipeline, &options, &sweep) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {}", one_line(&e));
                        return ExitCode::FAILURE;
                    }
                };
                println!("{comparison}");
                let json_text =
                    serde_json::to_string_pretty(&comparison).expect("comparison serializes");
                return write_outputs([(json, json_text), (csv, comparison.to_csv())]);
            }
            let report = match cli::bench::bench(&pipeline, &options) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {}", one_line(&e));
                    return ExitCode::FAILURE;
                }
            };
            println!("{report}");
            let json_text = serde_json::to_string_pretty(&report).expect("report serializes");
            write_outputs([(json, json_text), (csv, report.to_csv())])
        }
        Command::Eval {
            pred,
            truth,
            instances,
            coco_truth,
            match_by,
            panoptic_pred,
            panoptic_truth,
            thing_classes,
            model,
            classes,
            ignore,
            cityscapes_ids,
            json,
        } => {
            if let (Some(instances), Some(coco_truth)) = (&instances, &coco_truth) {
                let metrics = segstream::eval::coco::evaluate(instances, coco_truth, match_by);
                return print_metrics(metrics, json);
            }
            if let (Some(pp), Some(pt)) = (&panoptic_pred, &panoptic_truth) {
                let Ok(names) = model_names(model.as_deref()) else {
                    return ExitCode::FAILURE;
                };
                let options = segstream::eval::panoptic::PanopticOptions {
                    things: thing_classes,
                    names,
                };
                return print_metrics(segstream::eval::panoptic::evaluate(pp, pt, &options), json);
            }
            let (Some(pred), Some(truth)) = (pred, truth) else {
                eprintln!(
                    "error: eval needs --pred and --truth, --instances and --coco-truth, or \
                     --panoptic-pred and --panoptic-truth"
                );
                return ExitCode::FAILURE;
            };
            let Ok(names) = model_names(model.as_deref()) else {
                return ExitCode::FAILURE;
            };
            let options = segstream::eval::EvalOptions {
                classes: classes.unwrap_or(if names.is_empty() { 19 } else { names.len() }),
                names,
                ignore,
                cityscapes_ids,
            };
            print_metrics(segstream::eval::evaluate(&pred, &truth, &options), json)
        }
        Command::Enqueue {
            queue,
            names,
            inputs,
        } => {
            let url = match cli::queue::QueueUrl::parse(&queue) {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let subject = url.subject.clone();
            let options = cli::queue::QueueOptions {
                url,
                stream: names.stream,
            };
            match cli::queue::enqueue(&options, &inputs) {
                Ok(n) => {
                    println!(
                        "enqueued {n} file(s) on {subject} (stream {})",
                        options.stream
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Worker {
            pipeline,
            queue,
            names,
            ack_wait_s,
            max_deliveries,
            idle_exit_s,
            files_in_flight,
            threads,
            status_interval,
            metrics,
            summary: summary_path,
        } => {
            let checked = check_flags(status_interval, threads).and_then(|()| {
                let url = cli::queue::QueueUrl::parse(&queue)?;
                if !(0.1..=86_400.0).contains(&ack_wait_s) {
                    return Err(format!(
                        "--ack-wait-s {ack_wait_s} is out of range (expected 0.1 to 86400 seconds)"
                    ));
                }
                if !(1..=segstream::source::file::MAX_IN_FLIGHT).contains(&files_in_flight) {
                    return Err(format!(
                        "--files-in-flight {files_in_flight} is out of range (expected 1 to {})",
                        segstream::source::file::MAX_IN_FLIGHT
                    ));
                }
                if idle_exit_s.is_some_and(|s| !(0.0..=86_400.0 * 365.0).contains(&s)) {
                    return Err("--idle-exit-s is out of range (expected seconds >= 0)".into());
                }
                Ok(url)
            });
            let url = match checked {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let threads = cap_threads(threads);
            let pipeline = match Pipeline::load(&pipeline, &Overrides::default()) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {}", one_line(&e));
                    return ExitCode::FAILURE;
                }
            };
            if let Some(s) = pipeline.sinks.iter().find(|s| {
                s.config.output().is_some_and(|o| {
                    !segstream::pipeline::is_template(o) || !s.config.whole_output()
                })
            }) {
                eprintln!(
                    "error: {}: the {} sink writes {} for every file (expected {{name}} in the \
                     path, e.g. out/{{name}}.mp4, and no segment_s: each file of the queue gets \
                     its own outputs)",
                    pipeline.path.display(),
                    s.kind,
                    s.config.output().unwrap_or(Path::new("")).display()
                );
                return ExitCode::FAILURE;
            }
            let Some((control, stopped_by, _exporter)) = start_control(metrics) else {
                return ExitCode::FAILURE;
            };
            let options = cli::queue::WorkerOptions {
                queue: cli::queue::QueueOptions {
                    url,
                    stream: names.stream,
                },
                consumer: "segstream-workers".into(),
                ack_wait: std::time::Duration::from_secs_f64(ack_wait_s),
                max_deliveries,
                idle_exit: idle_exit_s.map(std::time::Duration::from_secs_f64),
            };
            let run = RunOptions {
                threads,
                ending_streams: true,
                ..RunOptions::default()
            };
            let status = (status_interval > 0.0)
                .then(|| status::spawn(control.clone(), status_interval, None));
            let started = std::time::Instant::now();
            let result = cli::queue::work(
                pipeline.clone(),
                &options,
                &run,
                control.clone(),
                files_in_flight,
            );
            if let Some(status) = status {
                status.finish();
            }
            let report = match result {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let items: Vec<segstream::component::ManyInput> = report
                .records
                .iter()
                .map(|r| segstream::component::ManyInput {
                    id: r.id,
                    name: r.name.clone(),
                    input: r.input.clone(),
                })
                .collect();
            let plan = cli::batch::Plan {
                shard: None,
                chosen: items.iter().map(|i| i.id).collect(),
                skipped: Vec::new(),
                in_shard: items.len(),
            };
            let summary = cli::batch::summarize(
                &pipeline,
                &items,
                &plan,
                &report.records,
                started.elapsed().as_secs_f64(),
            );
            eprintln!("{summary}");
            if let Some(path) = &summary_path {
                if let Err(e) = summary.write(path) {
                    eprintln!("error: cannot write the summary {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                println!("summary: {}", path.display());
            }
            let failed = if summary.failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
            exit_code(&stopped_by, control.stop_requested(), failed)
        }
        Command::Validate {
            pipeline: path,
            input,
            output,
        } => {
            let overrides = Overrides {
                input,
                output,
                ..Overrides::default()
            };
            let (pipeline, problems) = match Pipeline::load_with_problems(&path, &overrides) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {}", one_line(&e));
                    return ExitCode::FAILURE;
                }
            };
            let mut problems: Vec<String> = problems.iter().map(|p| p.in_file(&path)).collect();
            // What needs the components' resources: open every model with its providers.
            if let Some(pipeline) = &pipeline {
                let mut p = segstream::config::Problems::default();
                for (i, t) in pipeline.transforms.iter().enumerate() {
                    let mut q = segstream::config::Problems::under(format!("transforms[{i}]"));
                    t.config.probe(&mut q);
                    p.extend(q);
                }
                problems.extend(p.into_vec().iter().map(|p| p.in_file(&path)));
            }
            if problems.is_empty() {
                println!("ok: {} is valid", path.display());
                ExitCode::SUCCESS
            } else {
                for p in &problems {
                    eprintln!("error: {p}");
                }
                eprintln!("{} problem(s) found", problems.len());
                ExitCode::FAILURE
            }
        }
    }
}
