//! One task owns the [`Scheduler`]; everyone else sends it a [`Command`] with a reply channel.
//!
//! Commands waiting at the same time run in one store transaction (group commit), and their
//! answers go out once it is durable; an answer whose writes could not be made durable is
//! replaced by `Unavailable`.

use std::time::Duration;

use compsafe_core::text::{now_ms, rfc3339};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::Instrument;

use crate::sched::{Fault, Lease, Progress, SchedError, Scheduler};
use crate::store::{Store, SweepRow, UnitRow};

/// Commands run in one store transaction at most (group commit).
const BATCH: usize = 256;

/// Where a command's answer goes.
type Reply<T> = oneshot::Sender<Result<T, SchedError>>;

/// A finished sweep as stored: its row, its units and their results by ordinal.
pub type SweepResults = (SweepRow, Vec<UnitRow>, Vec<(u32, String)>);

/// What the scheduler task is asked to do.
#[derive(Debug)]
pub enum Command {
    /// Adds a planned sweep.
    Submit {
        /// The sweep.
        row: SweepRow,
        /// Its units.
        units: Vec<UnitRow>,
        /// Its progress.
        reply: Reply<Progress>,
    },
    /// Progress of one sweep.
    Progress {
        /// The sweep.
        sweep: String,
        /// Its progress.
        reply: Reply<Progress>,
    },
    /// Progress of every sweep.
    List {
        /// In submission order.
        reply: Reply<Vec<Progress>>,
    },
    /// Cancels a sweep.
    Cancel {
        /// The sweep.
        sweep: String,
        /// Its progress afterwards.
        reply: Reply<Progress>,
    },
    /// A sweep's row, units and stored results.
    Results {
        /// The sweep.
        sweep: String,
        /// What is stored.
        reply: Reply<SweepResults>,
    },
    /// Gives a worker its id.
    Register {
        /// The id.
        reply: Reply<String>,
    },
    /// Leases the next unit.
    Lease {
        /// The worker asking.
        worker: String,
        /// Models it holds.
        loaded: Vec<String>,
        /// The lease, if any unit is leasable.
        reply: Reply<Option<Lease>>,
    },
    /// Extends a lease.
    Renew {
        /// The worker holding it.
        worker: String,
        /// The unit.
        unit: String,
        /// The lease.
        lease: u64,
        /// The new deadline.
        reply: Reply<u64>,
    },
    /// Stores a result, and leases the next unit when `next` names the worker's models.
    Complete {
        /// The worker delivering it.
        worker: String,
        /// The unit.
        unit: String,
        /// The lease.
        lease: u64,
        /// The result's JSON.
        result: String,
        /// Lease the next unit to a worker holding these models.
        next: Option<Vec<String>>,
        /// Whether the result was new, and the next lease.
        reply: Reply<(bool, Option<Lease>)>,
    },
    /// Records that a unit failed, or takes it back unfinished (`released`).
    Fail {
        /// The worker reporting it.
        worker: String,
        /// The unit.
        unit: String,
        /// The lease.
        lease: u64,
        /// Why.
        reason: String,
        /// What kind of failure.
        fault: Fault,
        /// The worker gives it back unfinished (its attempt is not counted).
        released: bool,
        /// Done.
        reply: Reply<()>,
    },
    /// Takes back every lease of earlier workers (an interrupted local run) and finds the
    /// latest sweep of this spec.
    Resume {
        /// The spec's text.
        spec_text: String,
        /// The spec's path.
        spec_path: String,
        /// The sweep found.
        reply: Reply<Option<SweepRow>>,
    },
}

impl Command {
    /// The command's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Submit { .. } => "submit",
            Command::Progress { .. } => "progress",
            Command::List { .. } => "list",
            Command::Cancel { .. } => "cancel",
            Command::Results { .. } => "results",
            Command::Register { .. } => "register",
            Command::Lease { .. } => "lease",
            Command::Renew { .. } => "renew",
            Command::Complete { .. } => "complete",
            Command::Fail { .. } => "fail",
            Command::Resume { .. } => "resume",
        }
    }
}

/// An answer held back until the transaction it was computed in is durable.
type Deferred = Box<dyn FnOnce(Result<(), String>) + Send>;

fn defer<T: Send + 'static>(reply: Reply<T>, out: Result<T, SchedError>) -> Deferred {
    Box::new(move |durable: Result<(), String>| {
        let out = match durable {
            Ok(()) => out,
            Err(e) => Err(SchedError::Unavailable(format!(
                "the coordinator's store failed: {e}"
            ))),
        };
        let _ = reply.send(out);
    })
}

/// The sweeps whose progress a call to `unit` changes.
fn sweep_of<S: Store>(unit: &str) -> Vec<String> {
    Scheduler::<S>::sweep_of(unit).into_iter().collect()
}

/// Runs one command on the scheduler: returns the sweeps whose progress changed and the
/// answer to send once the batch is durable.
fn execute<S: Store>(
    s: &mut Scheduler<S>,
    cmd: Command,
    now: u64,
    stamp: &str,
) -> (Vec<String>, Deferred) {
    match cmd {
        Command::Submit { row, units, reply } => {
            let id = row.id.clone();
            (vec![id], defer(reply, s.submit(row, units, stamp)))
        }
        Command::Progress { sweep, reply } => (vec![], defer(reply, s.progress(&sweep))),
        Command::List { reply } => (vec![], defer(reply, Ok(s.list()))),
        Command::Cancel { sweep, reply } => {
            let out = s.cancel(&sweep, stamp);
            (vec![sweep], defer(reply, out))
        }
        Command::Results { sweep, reply } => {
            let out = s
                .sweep(&sweep)
                .and_then(|row| Ok((row, s.units(&sweep)?, s.results(&sweep)?)));
            (vec![], defer(reply, out))
        }
        Command::Register { reply } => (vec![], defer(reply, Ok(s.register()))),
        Command::Lease {
            worker,
            loaded,
            reply,
        } => {
            s.touch(&worker, now);
            let (out, changed) = lease_on(s, &worker, &loaded, now, stamp);
            (changed, defer(reply, out))
        }
        Command::Renew {
            worker,
            unit,
            lease,
            reply,
        } => {
            s.touch(&worker, now);
            (vec![], defer(reply, s.renew(&unit, lease, now)))
        }
        Command::Complete {
            worker,
            unit,
            lease,
            result,
            next,
            reply,
        } => {
            s.touch(&worker, now);
            let mut changed = sweep_of::<S>(&unit);
            let accepted = match s.complete(&unit, lease, &result, now, stamp) {
                Ok(a) => a,
                Err(e) => return (changed, defer(reply, Err(e))),
            };
            let Some(loaded) = next else {
                return (changed, defer(reply, Ok((accepted, None))));
            };
            let (next, more) = lease_on(s, &worker, &loaded, now, stamp);
            changed.extend(more);
            (changed, defer(reply, next.map(|n| (accepted, n))))
        }
        Command::Fail {
            worker,
            unit,
            lease,
            reason,
            fault,
            released,
            reply,
        } => {
            s.touch(&worker, now);
            let changed = sweep_of::<S>(&unit);
            let out = if released {
                s.release(&unit, lease, &reason, now)
            } else {
                s.fail(&unit, lease, &reason, fault, now, stamp)
            };
            (changed, defer(reply, out))
        }
        Command::Resume {
            spec_text,
            spec_path,
            reply,
        } => {
            // Workers of the interrupted run are gone: take their leases back now.
            let changed = match s.release_all("released: the run was interrupted") {
                Ok(c) => c,
                Err(e) => return (vec![], defer(reply, Err(e))),
            };
            let found = s.list().into_iter().rev().find_map(|p| {
                let row = s.sweep(&p.id).ok()?;
                (row.spec_text == spec_text && row.spec_path == spec_path).then_some(row)
            });
            (changed, defer(reply, Ok(found)))
        }
    }
}

/// Leases the next unit to `worker` and counts it.
fn lease_on<S: Store>(
    s: &mut Scheduler<S>,
    worker: &str,
    loaded: &[String],
    now: u64,
    stamp: &str,
) -> (Result<Option<Lease>, SchedError>, Vec<String>) {
    let out = s.lease(worker, loaded, now, stamp);
    let changed = match &out {
        Ok(Some(l)) => {
            metrics::counter!("compsafe_leases_total").increment(1);
            vec![l.spec.sweep_id.clone()]
        }
        _ => vec![],
    };
    (out, changed)
}

/// A command on its way to the scheduler task, with the caller's span.
struct Envelope {
    cmd: Command,
    span: tracing::Span,
}

/// Cheap, cloneable access to the scheduler task.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Envelope>,
    progress: broadcast::Sender<Progress>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

/// The scheduler task is gone (the coordinator is shutting down).
pub const GONE: &str = "scheduler stopped";

impl Handle {
    /// Starts the thread that owns `sched`; it also expires leases every `tick`.
    pub fn spawn<S: Store>(sched: Scheduler<S>, tick: Duration) -> Result<Handle, SchedError> {
        let (tx, mut rx) = mpsc::channel::<Envelope>(1024);
        let (progress, _) = broadcast::channel(1024);
        let notify = progress.clone();
        let run = async move {
            let mut sched = sched;
            let mut ticker = tokio::time::interval(tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let changed = tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(first) => run_batch(&mut sched, first, &mut rx),
                        None => break,
                    },
                    _ = ticker.tick() => {
                        let now = now_ms();
                        let changed = match sched.expire(now, &rfc3339(now)) {
                            Ok(c) => c,
                            Err(e) => {
                                tracing::error!("expiring leases: {e}");
                                Vec::new()
                            }
                        };
                        crate::telemetry::record(&mut sched, now);
                        changed
                    }
                };
                for id in changed {
                    if let Ok(p) = sched.progress(&id) {
                        let _ = notify.send(p);
                    }
                }
            }
        }
        .instrument(tracing::info_span!("scheduler"));
        // The scheduler's store writes block: it runs on a thread of its own, so they never
        // hold up one of the threads that serve the RPCs.
        let unavailable =
            |e: std::io::Error| SchedError::Unavailable(format!("starting the scheduler: {e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(unavailable)?;
        std::thread::Builder::new()
            .name("compsafe-scheduler".into())
            .spawn(move || rt.block_on(run))
            .map_err(unavailable)?;
        Ok(Handle { tx, progress })
    }

    /// Sends a command built around its reply channel and waits for the answer.
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, SchedError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Envelope {
                cmd: make(reply),
                span: tracing::Span::current(),
            })
            .await
            .map_err(|_| SchedError::Unavailable(GONE.into()))?;
        rx.await.map_err(|_| SchedError::Unavailable(GONE.into()))?
    }

    /// Adds a planned sweep.
    pub async fn submit(&self, row: SweepRow, units: Vec<UnitRow>) -> Result<Progress, SchedError> {
        self.ask(|reply| Command::Submit { row, units, reply })
            .await
    }

    /// Progress of one sweep.
    pub async fn progress(&self, sweep: String) -> Result<Progress, SchedError> {
        self.ask(|reply| Command::Progress { sweep, reply }).await
    }

    /// Progress of every sweep.
    pub async fn list(&self) -> Result<Vec<Progress>, SchedError> {
        self.ask(|reply| Command::List { reply }).await
    }

    /// Cancels a sweep.
    pub async fn cancel(&self, sweep: String) -> Result<Progress, SchedError> {
        self.ask(|reply| Command::Cancel { sweep, reply }).await
    }

    /// A sweep's row, units and stored results.
    pub async fn results(&self, sweep: String) -> Result<SweepResults, SchedError> {
        self.ask(|reply| Command::Results { sweep, reply }).await
    }

    /// A new worker id.
    pub async fn register(&self) -> Result<String, SchedError> {
        self.ask(|reply| Command::Register { reply }).await
    }

    /// Leases the next unit to `worker`.
    pub async fn lease(
        &self,
        worker: String,
        loaded: Vec<String>,
    ) -> Result<Option<Lease>, SchedError> {
        self.ask(|reply| Command::Lease {
            worker,
            loaded,
            reply,
        })
        .await
    }

    /// Extends a lease; returns the new deadline.
    pub async fn renew(&self, worker: String, unit: String, lease: u64) -> Result<u64, SchedError> {
        self.ask(|reply| Command::Renew {
            worker,
            unit,
            lease,
            reply,
        })
        .await
    }

    /// Stores a result; with `next`, also leases the next unit.
    pub async fn complete(
        &self,
        worker: String,
        unit: String,
        lease: u64,
        result: String,
        next: Option<Vec<String>>,
    ) -> Result<(bool, Option<Lease>), SchedError> {
        self.ask(|reply| Command::Complete {
            worker,
            unit,
            lease,
            result,
            next,
            reply,
        })
        .await
    }

    /// Records a failure (or a release) of a unit.
    #[allow(clippy::too_many_arguments)]
    pub async fn fail(
        &self,
        worker: String,
        unit: String,
        lease: u64,
        reason: String,
        fault: Fault,
        released: bool,
    ) -> Result<(), SchedError> {
        self.ask(|reply| Command::Fail {
            worker,
            unit,
            lease,
            reason,
            fault,
            released,
            reply,
        })
        .await
    }

    /// Takes back earlier workers' leases and finds the latest sweep of a spec.
    pub async fn resume(
        &self,
        spec_text: String,
        spec_path: String,
    ) -> Result<Option<SweepRow>, SchedError> {
        self.ask(|reply| Command::Resume {
            spec_text,
            spec_path,
            reply,
        })
        .await
    }

    /// Progress notifications of every sweep.
    pub fn subscribe(&self) -> broadcast::Receiver<Progress> {
        self.progress.subscribe()
    }
}

/// Runs `first` and the commands waiting behind it in one transaction; answers once it is
/// durable. Returns the sweeps whose progress changed.
fn run_batch<S: Store>(
    sched: &mut Scheduler<S>,
    first: Envelope,
    rx: &mut mpsc::Receiver<Envelope>,
) -> Vec<String> {
    let now = now_ms();
    let stamp = rfc3339(now);
    let batched = sched.begin_batch();
    if let Err(e) = &batched {
        tracing::error!("starting a store transaction: {e}");
    }
    let mut replies = Vec::new();
    let mut changed = Vec::new();
    let mut next = Some(first);
    while let Some(env) = next.take() {
        let _g = env.span.enter();
        tracing::trace!(command = env.cmd.name(), "scheduler");
        let (c, reply) = execute(sched, env.cmd, now, &stamp);
        changed.extend(c);
        replies.push(reply);
        if replies.len() < BATCH {
            next = rx.try_recv().ok();
        }
    }
    let durable = match batched {
        Ok(()) => sched.end_batch().map_err(|e| {
            tracing::error!("committing to the store: {e}");
            e.to_string()
        }),
        Err(e) => Err(e.to_string()),
    };
    for reply in replies {
        reply(durable.clone());
    }
    changed.sort_unstable();
    changed.dedup();
    changed
}
