//! Test-only failpoints: hidden `--failpoint NAME` makes the process die abruptly at
//! one chosen moment, so the fault tests can prove what a crash there leaves behind, or
//! makes one step slow.

use clap::ValueEnum;

/// Exit status of a process stopped by a failpoint.
pub const EXIT_CODE: i32 = 86;

/// A moment at which the process can be made to die.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Failpoint {
    /// Right after the store acknowledged a batch replayed from a spill file, before
    /// the file is deleted.
    ExitAfterReplayApply,
    /// Every flush tick's drain takes [`SLOW_TICK`] longer: a tick that runs late.
    SlowTick,
}

/// How long [`Failpoint::SlowTick`] holds each tick.
pub const SLOW_TICK: std::time::Duration = std::time::Duration::from_secs(3);

/// Exits at once (no destructors, no flush) when `armed` is `at`.
pub fn hit(armed: Option<Failpoint>, at: Failpoint) {
    if armed == Some(at) {
        eprintln!("viewcounter: failpoint {at:?} hit; exiting with status {EXIT_CODE}");
        std::process::exit(EXIT_CODE);
    }
}
