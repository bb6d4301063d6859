//! `covdiff data`: inspect data sources.

use anyhow::Result;
use covdiff_core::data::DataSource;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Count, shape, and per-channel mean and std of a source.
    Info {
        /// fashion-mnist, idx:<file>, cifar10:<dir or file>, or images:<dir>.
        source: String,
        /// Side to which `images:` folders are resized.
        #[arg(long, default_value_t = 32)]
        image_size: usize,
    },
}

pub fn run(c: Command) -> Result<()> {
    match c {
        Command::Info { source, image_size } => {
            let src: DataSource = source.parse()?;
            let set = src.load(image_size)?;
            println!("source:   {src}");
            println!("count:    {}", set.len());
            println!("shape:    [{}, {}, {}, {}]", set.len(), set.channels, set.size, set.size);
            match &set.labels {
                Some(l) => println!("labels:   {} classes", l.iter().max().map_or(0, |m| m + 1)),
                None => println!("labels:   none"),
            }
            for (c, (m, s)) in set.channel_stats().into_iter().enumerate() {
                println!("channel {c}: mean {m:+.4}  std {s:.4}  (pixels in [-1, 1])");
            }
            Ok(())
        }
    }
}
