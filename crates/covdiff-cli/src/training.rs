//! The training loop of every `covdiff` trainer (images and toy 2D): resume from a checkpoint,
//! step the shared [`Trainer`] with a progress bar, write JSONL metrics and checkpoints.

use crate::checkpoint::{load_error, recorder, Checkpoints};
use crate::progress::bar;
use anyhow::{ensure, Context, Result};
use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::record::Recorder;
use burn::tensor::{backend::Backend, ElementConversion};
use covdiff_model::diffusion::train::{OptimRecord, Snapshot};
use covdiff_model::diffusion::{Stage, Trainer};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Where a run records itself: JSONL metrics every `log_every` steps, and checkpoints every
/// `every` steps (0: only at the end).
pub struct Log<'a> {
    pub metrics: &'a mut dyn Write,
    pub checkpoints: &'a Checkpoints,
    pub every: usize,
    pub log_every: usize,
}

fn save<B: Backend, S: Stage<Autodiff<B>>>(dir: &Path, trainer: &Trainer<Autodiff<B>, S>) -> Result<usize> {
    let snap = trainer.checkpoint();
    snap.model.save_file(dir.join("model"), &recorder()).context("writing the model checkpoint")?;
    snap.ema.save_file(dir.join("ema"), &recorder()).context("writing the EMA checkpoint")?;
    recorder().record(snap.optim, dir.join("optim")).context("writing the optimiser checkpoint")?;
    Ok(snap.steps_done)
}

/// Train to `steps`, resuming from a checkpoint when `log` has one; `init` builds a fresh model
/// to read checkpoints into. Returns the trainer and a summary for the model card.
pub fn train_loop<B: Backend, S: Stage<Autodiff<B>>>(
    mut trainer: Trainer<Autodiff<B>, S>,
    init: impl Fn() -> S::Model,
    steps: usize,
    name: &str,
    mut log: Option<Log>,
    device: &B::Device,
) -> Result<(Trainer<Autodiff<B>, S>, serde_json::Value)> {
    if let Some(log) = &log {
        let read = |dir: &Path, step: usize| -> Result<()> {
            let model =
                init().load_file(dir.join("model"), &recorder(), device).map_err(|e| load_error(dir, "model", e))?;
            let ema = init()
                .valid()
                .load_file(dir.join("ema"), &recorder(), device)
                .map_err(|e| load_error(dir, "EMA", e))?;
            let optim: OptimRecord<Autodiff<B>, S::Model> =
                recorder().load(dir.join("optim"), device).map_err(|e| load_error(dir, "optimiser", e))?;
            trainer.restore(Snapshot { model, ema, optim, steps_done: step });
            Ok(())
        };
        if let Some(step) = log.checkpoints.resume(read)? {
            eprintln!("resuming from the checkpoint in {} at step {step}", log.checkpoints.dir().display());
        }
    }
    let first = trainer.steps_done();
    let log_every = log.as_ref().map_or(50, |l| l.log_every.max(1));
    let pb = bar(steps as u64, name);
    pb.set_position(first.min(steps) as u64);
    let start = Instant::now();
    let mut last = f64::NAN;
    for step in first..steps {
        let loss = trainer.step();
        if step % log_every == 0 || step + 1 == steps {
            last = loss.total.into_scalar().elem::<f64>();
            ensure!(last.is_finite(), "training diverged at step {step} (loss {last}); try a smaller --lr");
            pb.set_message(format!("{name} {last:.4}"));
            if let Some(log) = log.as_mut() {
                let seconds = start.elapsed().as_secs_f64();
                let mut line = serde_json::json!({
                    "step": step + 1,
                    "loss": last,
                    "lr": trainer.settings().lr_at(step),
                    "seconds": seconds,
                    "it_per_s": (step + 1 - first) as f64 / seconds.max(1e-9),
                });
                for (term, value) in loss.terms {
                    line[term] = serde_json::json!(value.into_scalar().elem::<f64>());
                }
                writeln!(log.metrics, "{line}")?;
            }
        }
        if let Some(log) = &log {
            if log.every > 0 && (step + 1) % log.every == 0 {
                log.checkpoints.save(|dir| save(dir, &trainer))?;
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    if let Some(log) = &log {
        if trainer.steps_done() > first {
            log.checkpoints.save(|dir| save(dir, &trainer))?;
        }
    }
    let summary = serde_json::json!({ "final_loss": last, "train_seconds": start.elapsed().as_secs_f64() });
    Ok((trainer, summary))
}
