//! `covdiff schedule`: print a noise schedule.

use anyhow::{ensure, Result};
use covdiff_core::schedule::{Cosine, Linear, Schedule, Sigmoid};

#[derive(clap::ValueEnum, Clone, Copy)]
enum Kind {
    Linear,
    Cosine,
    Sigmoid,
}

#[derive(clap::Args)]
pub struct Args {
    /// Which schedule (docs/maths.md, "Schedules").
    #[arg(value_enum)]
    kind: Kind,
    /// Number of steps T (default: 1000 for linear and cosine, 500 for sigmoid).
    #[arg(long)]
    steps: Option<usize>,
    /// Print CSV `t,beta,alpha,abar` for every step instead of a summary.
    #[arg(long)]
    csv: bool,
}

pub fn run(a: Args) -> Result<()> {
    if let Some(t) = a.steps {
        ensure!((1..=100_000).contains(&t), "--steps must be between 1 and 100000");
    }
    let schedule: Box<dyn Schedule> = match a.kind {
        Kind::Linear => Box::new(Linear { steps: a.steps.unwrap_or(1000), ..Default::default() }),
        Kind::Cosine => Box::new(Cosine { steps: a.steps.unwrap_or(1000), ..Default::default() }),
        Kind::Sigmoid => Box::new(Sigmoid { steps: a.steps.unwrap_or(500), ..Default::default() }),
    };
    let table = schedule.table();
    let big_t = table.steps();
    if a.csv {
        println!("t,beta,alpha,abar");
        for t in 1..=big_t {
            println!("{t},{:.17e},{:.17e},{:.17e}", table.beta(t), table.alpha(t), table.abar(t));
        }
    } else {
        println!("{} schedule, T = {big_t}", schedule.name());
        println!("{:>6} {:>12} {:>12} {:>12}", "t", "beta", "abar", "btilde");
        let mut shown: Vec<usize> = (0..=10).map(|i| 1 + i * (big_t - 1) / 10).collect();
        shown.dedup();
        for t in shown {
            println!("{t:>6} {:>12.4e} {:>12.4e} {:>12.4e}", table.beta(t), table.abar(t), table.btilde(t));
        }
    }
    Ok(())
}
