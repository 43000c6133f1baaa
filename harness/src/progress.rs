//! Following a sweep's progress: a progress bar with counts and ETA on a terminal, JSON lines
//! for machines, plain lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use compsafe_proto::pb::sweeps_client::SweepsClient;
use compsafe_proto::pb::{GetRequest, SweepStatus};
use compsafe_proto::{AuthChannel, PROTOCOL_VERSION};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::status_error;
use crate::exit::Failure;

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// `compsafe watch`: progress is its output.
    Stdout,
    /// `compsafe run`: stdout is kept for the result.
    Stderr,
}

pub(crate) fn status_json(s: &SweepStatus) -> serde_json::Value {
    serde_json::json!({"event": "progress", "sweep": s.sweep_id, "name": s.name, "state": s.state,
        "queued": s.queued, "leased": s.leased, "done": s.done, "failed": s.failed,
        "total": s.total, "error": s.error})
}

pub(crate) fn status_line(s: &SweepStatus) -> String {
    let mut line = format!(
        "{} ({}): {} — {}/{} done, {} running, {} queued, {} failed",
        s.sweep_id, s.name, s.state, s.done, s.total, s.leased, s.queued, s.failed
    );
    if !s.error.is_empty() {
        line.push_str(&format!(" — {}", s.error));
    }
    line
}

fn emit(sink: Sink, line: &str) {
    match sink {
        Sink::Stdout => println!("{line}"),
        Sink::Stderr => eprintln!("{line}"),
    }
}

/// Follows sweep `id` until it finishes; returns its last status.
pub async fn follow(
    client: &mut SweepsClient<AuthChannel>,
    id: &str,
    json: bool,
    sink: Sink,
) -> Result<SweepStatus, Failure> {
    let terminal = match sink {
        Sink::Stdout => std::io::stdout().is_terminal(),
        Sink::Stderr => std::io::stderr().is_terminal(),
    };
    let bar = (!json && terminal).then(|| {
        let target = match sink {
            Sink::Stdout => ProgressDrawTarget::stdout(),
            Sink::Stderr => ProgressDrawTarget::stderr(),
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} units  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut stream = client
        .watch(GetRequest {
            protocol: PROTOCOL_VERSION,
            sweep_id: id.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut last: Option<SweepStatus> = None;
    while let Some(s) = stream.message().await.map_err(status_error)? {
        match &bar {
            Some(bar) => {
                bar.set_length(u64::from(s.total));
                bar.set_position(u64::from(s.done));
                bar.set_message(format!(
                    "{} — {} running, {} queued, {} failed",
                    s.state, s.leased, s.queued, s.failed
                ));
            }
            None if json => emit(sink, &status_json(&s).to_string()),
            None => {
                // Plain lines: only when the counts move, not on every renewal.
                let same = last
                    .as_ref()
                    .is_some_and(|l| (l.done, l.failed, &l.state) == (s.done, s.failed, &s.state));
                if !same {
                    emit(sink, &status_line(&s));
                }
            }
        }
        last = Some(s);
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    last.ok_or_else(|| Failure::infra("the coordinator closed the progress stream"))
}

/// Ok for a finished sweep; the sweep's error otherwise (exit 2 for an input error the
/// workers refused, 3 for anything else).
pub fn finished(s: &SweepStatus) -> Result<(), Failure> {
    if s.state == "done" {
        return Ok(());
    }
    let message = format!("sweep {} {}: {}", s.sweep_id, s.state, s.error);
    if s.error
        .starts_with(compsafe_coordinator::sched::INPUT_ERROR)
    {
        Err(Failure::input(message))
    } else {
        Err(Failure::infra(message))
    }
}
