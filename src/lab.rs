//! lab (placeholder until the lab branch lands)
#[derive(clap::Subcommand, Debug)]
pub enum LabCommand {}
pub fn run(cmd: LabCommand) -> anyhow::Result<()> {
    match cmd {}
}
