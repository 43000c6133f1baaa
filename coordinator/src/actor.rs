//! One task owns the [`Scheduler`]; everyone else sends it commands with a reply channel.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::Instrument;

use crate::plan::{now_ms, rfc3339};
use crate::sched::{Progress, SchedError, Scheduler};
use crate::store::Store;

/// Sends a command's answer once its writes are durable (`Err`: they could not be made so).
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

type Job<S> = Box<dyn FnOnce(&mut Scheduler<S>, u64, &str) -> (Vec<String>, Reply) + Send>;

/// Commands run in one store transaction at most (group commit).
const BATCH: usize = 256;

/// A command for the scheduler task: a closure run on the state, with the caller's span.
struct Command<S: Store> {
    job: Job<S>,
    span: tracing::Span,
}

/// Cheap, cloneable access to the scheduler task.
pub struct Handle<S: Store> {
    tx: mpsc::Sender<Command<S>>,
    progress: broadcast::Sender<Progress>,
}

impl<S: Store> Clone for Handle<S> {
    fn clone(&self) -> Self {
        Handle {
            tx: self.tx.clone(),
            progress: self.progress.clone(),
        }
    }
}

impl<S: Store> std::fmt::Debug for Handle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

/// The scheduler task is gone (the coordinator is shutting down).
pub const GONE: &str = "scheduler stopped";

impl<S: Store> Handle<S> {
    /// Starts the thread that owns `sched`; it also expires leases every `tick`.
    pub fn spawn(sched: Scheduler<S>, tick: Duration) -> Result<Handle<S>, SchedError> {
        let (tx, mut rx) = mpsc::channel::<Command<S>>(1024);
        let (progress, _) = broadcast::channel(1024);
        let notify = progress.clone();
        let run = async move {
            let mut sched = sched;
            let mut ticker = tokio::time::interval(tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let changed = tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(first) => {
                            // Group commit: the commands waiting now run in one
                            // transaction, and their answers go out once it is durable.
                            let now = now_ms();
                            let stamp = rfc3339(now);
                            let batched = sched.begin_batch();
                            if let Err(e) = &batched {
                                tracing::error!("starting a store transaction: {e}");
                            }
                            let mut replies = Vec::new();
                            let mut changed = Vec::new();
                            let mut next = Some(first);
                            while let Some(cmd) = next.take() {
                                let _g = cmd.span.enter();
                                let (c, reply) = (cmd.job)(&mut sched, now, &stamp);
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

    /// Runs `f` on the scheduler; `f` returns its answer and the sweeps whose progress changed.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Scheduler<S>, u64, &str) -> (Result<T, SchedError>, Vec<String>)
            + Send
            + 'static,
    ) -> Result<T, SchedError> {
        let (reply, rx) = oneshot::channel();
        let job: Job<S> = Box::new(move |s, now, stamp| {
            let (out, changed) = f(s, now, stamp);
            let send: Reply = Box::new(move |durable: Result<(), String>| {
                let out = match durable {
                    Ok(()) => out,
                    Err(e) => Err(SchedError::Unavailable(format!(
                        "the coordinator's store failed: {e}"
                    ))),
                };
                let _ = reply.send(out);
            });
            (changed, send)
        });
        self.tx
            .send(Command {
                job,
                span: tracing::Span::current(),
            })
            .await
            .map_err(|_| SchedError::Invalid(GONE.into()))?;
        rx.await.map_err(|_| SchedError::Invalid(GONE.into()))?
    }

    /// Progress notifications of every sweep.
    pub fn subscribe(&self) -> broadcast::Receiver<Progress> {
        self.progress.subscribe()
    }
}
