//! `grenzwacht rooms list|resume`: the operator's view of paused rooms, on the configured store
//! file (also while the guard runs: the guard notices a lifted pause within a second).
//!
//! Exit codes: 0 success; 1 the room was not paused or the store cannot be used; 2 the
//! configuration does not load.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use crate::config::Config;
use crate::policy::Direction;
use crate::store::{RoomPause, Store};

#[derive(Subcommand, Debug)]
pub enum RoomsCommand {
    /// List the paused rooms: direction, room, cause, rule, event, time (UTC).
    List {
        #[arg(long, short, env = "GRENZWACHT_CONFIG")]
        config: PathBuf,
        /// One JSON object per line instead of tab-separated columns.
        #[arg(long)]
        json: bool,
    },
    /// Lift the pause of a room (in both directions unless `--direction` is given).
    Resume {
        #[arg(long, short, env = "GRENZWACHT_CONFIG")]
        config: PathBuf,
        #[arg(long, value_enum)]
        direction: Option<Dir>,
        room_id: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dir {
    Inbound,
    Outbound,
}

impl From<Dir> for Direction {
    fn from(d: Dir) -> Self {
        match d {
            Dir::Inbound => Direction::Inbound,
            Dir::Outbound => Direction::Outbound,
        }
    }
}

fn open(config: &PathBuf) -> Result<Store, ExitCode> {
    let cfg = Config::load(config).map_err(|errs| {
        eprintln!("{errs}");
        ExitCode::from(2)
    })?;
    Store::open(&cfg.store.path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(1)
    })
}

fn time(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => ms.to_string(),
    }
}

fn json(p: &RoomPause) -> serde_json::Value {
    serde_json::json!({
        "direction": p.direction, "room_id": p.room_id, "cause": p.cause.as_str(),
        "rule": p.rule, "event_id": p.event_id, "paused_at": time(p.paused_at), "paused_at_ms": p.paused_at,
    })
}

fn line(p: &RoomPause) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        p.direction,
        p.room_id,
        p.cause.as_str(),
        p.rule,
        p.event_id.as_deref().unwrap_or("-"),
        time(p.paused_at)
    )
}

/// Runs a `rooms` subcommand.
pub fn run(cmd: RoomsCommand) -> ExitCode {
    match cmd {
        RoomsCommand::List {
            config,
            json: as_json,
        } => {
            let store = match open(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            match store.room_pauses() {
                Ok(list) => {
                    for p in &list {
                        println!(
                            "{}",
                            if as_json {
                                json(p).to_string()
                            } else {
                                line(p)
                            }
                        );
                    }
                    if !as_json {
                        eprintln!("{} paused", list.len());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        RoomsCommand::Resume {
            config,
            direction,
            room_id,
        } => {
            let store = match open(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            match super::lift(&store, direction.map(Direction::from), &room_id) {
                Ok(lifted) if lifted.is_empty() => {
                    eprintln!(
                        "{room_id} is not paused{}",
                        direction
                            .map(|d| format!(" ({})", Direction::from(d).as_str()))
                            .unwrap_or_default()
                    );
                    ExitCode::from(1)
                }
                Ok(lifted) => {
                    for p in &lifted {
                        println!("lifted\t{}", line(p));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
