//! Training checkpoints: a folder with the model, the optimiser state and a
//! `state.json`, written to a temporary folder and swapped in, so a killed
//! run always leaves a complete checkpoint behind. What goes into the folder
//! is the caller's: `save` and `resume` take the writer and the reader.

use anyhow::{bail, Context, Result};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub struct Checkpoints {
    dir: PathBuf,
    /// What identifies the run; a checkpoint of another run is never resumed.
    run: Value,
}

/// The recorder for checkpoint files.
pub fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::new()
}

/// A recorder error as a message that tells the user how to recover.
pub fn load_error(dir: &Path, what: &str, e: burn::record::RecorderError) -> anyhow::Error {
    anyhow::anyhow!("{}: cannot read the {what} checkpoint ({e:?}); pass --fresh to start over", dir.display())
}

impl Checkpoints {
    pub fn new(dir: PathBuf, run: Value) -> Self {
        Self { dir, run }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a checkpoint is there to resume (also one left half-swapped by a kill).
    pub fn exists(&self) -> bool {
        self.dir.join("state.json").exists() || self.dir.with_extension("old").join("state.json").exists()
    }

    /// `write` fills a fresh folder and returns the step it holds.
    pub fn save(&self, write: impl FnOnce(&Path) -> Result<usize>) -> Result<()> {
        let tmp = self.dir.with_extension("tmp");
        let old = self.dir.with_extension("old");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let step = write(&tmp)?;
        let state = serde_json::json!({ "run": self.run, "step": step });
        std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(&state)? + "\n")?;
        let _ = std::fs::remove_dir_all(&old);
        if self.dir.exists() {
            std::fs::rename(&self.dir, &old)?;
        }
        std::fs::rename(&tmp, &self.dir)?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Restore with `read(folder, step)`, if there is a checkpoint; returns the step it resumes at.
    pub fn resume(&self, read: impl FnOnce(&Path, usize) -> Result<()>) -> Result<Option<usize>> {
        // A run killed between the two renames of `save` left its checkpoint in `.old`.
        let old = self.dir.with_extension("old");
        if !self.dir.exists() && old.join("state.json").exists() {
            std::fs::rename(&old, &self.dir)?;
        }
        let state_path = self.dir.join("state.json");
        if !state_path.exists() {
            return Ok(None);
        }
        let state: Value = serde_json::from_str(&std::fs::read_to_string(&state_path)?)
            .with_context(|| format!("{} is corrupt; pass --fresh to start over", state_path.display()))?;
        if state["run"] != self.run {
            bail!(
                "the checkpoint in {} belongs to a different run ({}); pass --fresh to start over, or choose another --out",
                self.dir.display(),
                state["run"]
            );
        }
        let step = state["step"].as_u64().context("checkpoint state has no step")? as usize;
        read(&self.dir, step)?;
        Ok(Some(step))
    }

    /// Start or resume a run: with `fresh` drop the checkpoint; open the JSONL metrics at
    /// `metrics`, appended to when a checkpoint will be resumed, else truncated.
    pub fn start(&self, fresh: bool, metrics: &Path) -> Result<std::fs::File> {
        if fresh {
            self.remove()?;
        }
        let resuming = self.exists();
        std::fs::OpenOptions::new()
            .create(true)
            .append(resuming)
            .write(true)
            .truncate(!resuming)
            .open(metrics)
            .with_context(|| format!("opening {}", metrics.display()))
    }

    pub fn remove(&self) -> Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).with_context(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }
}
