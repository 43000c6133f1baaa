//! Durable sweep state behind a trait, with a SQLite (WAL) implementation.

use std::path::Path;

use compsafe_core::unit::{Planned, UnitId, UnitKind};
use rusqlite::{params, Connection, OptionalExtension};

/// Lifecycle of a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepState {
    /// Units are being worked on.
    Running,
    /// Every unit has a result.
    Done,
    /// A unit failed for good.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl SweepState {
    /// The name stored and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            SweepState::Running => "running",
            SweepState::Done => "done",
            SweepState::Failed => "failed",
            SweepState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> SweepState {
        match s {
            "done" => SweepState::Done,
            "failed" => SweepState::Failed,
            "cancelled" => SweepState::Cancelled,
            _ => SweepState::Running,
        }
    }

    /// Whether the sweep will not change any more.
    pub fn is_final(self) -> bool {
        self != SweepState::Running
    }
}

/// Lifecycle of a work unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitState {
    /// Waiting for a worker.
    Queued,
    /// Held by a worker until its lease deadline.
    Leased,
    /// Has its result.
    Done,
    /// Gave up after its attempts or a non-retryable failure.
    Failed,
}

impl UnitState {
    fn as_str(self) -> &'static str {
        match self {
            UnitState::Queued => "queued",
            UnitState::Leased => "leased",
            UnitState::Done => "done",
            UnitState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> UnitState {
        match s {
            "leased" => UnitState::Leased,
            "done" => UnitState::Done,
            "failed" => UnitState::Failed,
            _ => UnitState::Queued,
        }
    }
}

/// A sweep as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRow {
    /// Sweep id.
    pub id: String,
    /// `[sweep] name` of the spec.
    pub name: String,
    /// The spec's text.
    pub spec_text: String,
    /// The spec's path (relative paths resolve against its directory).
    pub spec_path: String,
    /// Current state.
    pub state: SweepState,
    /// Submission order (unix milliseconds).
    pub created_ms: u64,
    /// RFC 3339 submission time.
    pub started_at: String,
    /// RFC 3339 time the last unit finished.
    pub finished_at: Option<String>,
    /// Why the sweep failed.
    pub error: Option<String>,
}

/// A work unit as stored (see `compsafe_core::unit` for what its fields mean per kind).
#[derive(Debug, Clone, PartialEq)]
pub struct UnitRow {
    /// The sweep it belongs to.
    pub sweep_id: String,
    /// Position in the sweep's plan.
    pub ordinal: u32,
    /// What it does.
    pub kind: UnitKind,
    /// Its group: it waits for the lower stages of the same kind and group.
    pub group: u32,
    /// Its stage within the group.
    pub stage: u32,
    /// Variant index in the spec (0 is the reference).
    pub variant: u32,
    /// Suite index in the spec.
    pub suite: u32,
    /// First prompt.
    pub start: u32,
    /// One past the last prompt.
    pub end: u32,
    /// Base model path (placement key).
    pub model: String,
    /// Current state.
    pub state: UnitState,
    /// Leases handed out so far.
    pub attempts: u32,
    /// The current (or last) lease.
    pub lease_id: u64,
    /// Lease deadline, unix milliseconds.
    pub deadline_ms: u64,
    /// Worker holding (or last holding) the lease.
    pub worker: String,
    /// Last failure reason.
    pub error: String,
}

impl UnitRow {
    /// The unit's id on the wire: `<sweep>:<ordinal>`.
    pub fn id(&self) -> String {
        self.unit_id().to_string()
    }

    /// The unit's typed id.
    pub fn unit_id(&self) -> UnitId {
        UnitId {
            sweep: compsafe_core::unit::SweepId(self.sweep_id.clone()),
            ordinal: self.ordinal,
        }
    }

    /// The unit as planned.
    pub fn planned(&self) -> Planned {
        Planned {
            kind: self.kind,
            group: self.group,
            stage: self.stage,
            variant: self.variant,
            suite: self.suite,
            start: self.start,
            end: self.end,
        }
    }
}

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation (the disk, a lock, a corrupt file).
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value cannot be read back.
    #[error("store: {0}")]
    Corrupt(String),
}

/// Durable sweep state. Every scheduler transition is written here before it is answered.
pub trait Store: Send + 'static {
    /// Records a new sweep and its planned units.
    fn create_sweep(&mut self, sweep: &SweepRow, units: &[UnitRow]) -> Result<(), StoreError>;
    /// Updates a sweep's state and times.
    fn save_sweep(&mut self, sweep: &SweepRow) -> Result<(), StoreError>;
    /// Updates a unit's state, lease and attempts.
    fn save_unit(&mut self, unit: &UnitRow) -> Result<(), StoreError>;
    /// Stores a unit's result (the first one wins) and marks it done, atomically.
    fn complete_unit(&mut self, unit: &UnitRow, result: &str) -> Result<(), StoreError>;
    /// Everything, for a restart: sweeps in submission order and their units.
    fn load(&self) -> Result<(Vec<SweepRow>, Vec<UnitRow>), StoreError>;
    /// The stored result of a unit.
    fn result(&self, sweep_id: &str, ordinal: u32) -> Result<Option<String>, StoreError>;
    /// Every stored result of a sweep, by ordinal.
    fn results(&self, sweep_id: &str) -> Result<Vec<(u32, String)>, StoreError>;
    /// Starts a group of writes that [`Store::end_batch`] makes durable together.
    fn begin_batch(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Makes the writes since [`Store::begin_batch`] durable.
    fn end_batch(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// [`Store`] in a SQLite file (WAL journal), or in memory for tests.
pub struct SqliteStore {
    conn: Connection,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sweeps (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, spec_text TEXT NOT NULL, spec_path TEXT NOT NULL,
  state TEXT NOT NULL, created_ms INTEGER NOT NULL, started_at TEXT NOT NULL,
  finished_at TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS units (
  sweep_id TEXT NOT NULL, ordinal INTEGER NOT NULL,
  kind TEXT NOT NULL DEFAULT 'evaluate', grp INTEGER NOT NULL DEFAULT 0,
  stage INTEGER NOT NULL DEFAULT 0, variant INTEGER NOT NULL,
  suite INTEGER NOT NULL, start INTEGER NOT NULL, end_ INTEGER NOT NULL, model TEXT NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL, lease_id INTEGER NOT NULL,
  deadline_ms INTEGER NOT NULL, worker TEXT NOT NULL, error TEXT NOT NULL,
  PRIMARY KEY (sweep_id, ordinal));
CREATE TABLE IF NOT EXISTS results (
  sweep_id TEXT NOT NULL, ordinal INTEGER NOT NULL, result TEXT NOT NULL,
  PRIMARY KEY (sweep_id, ordinal));
";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` in WAL mode.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        Ok(SqliteStore { conn })
    }

    /// A store that lives in memory (tests, simulations).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore { conn })
    }
}

/// A store written before units had kinds: its units are evaluate units, grouped by suite,
/// the reference's at stage 0.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let has_kind = conn
        .prepare("SELECT 1 FROM pragma_table_info('units') WHERE name = 'kind'")?
        .exists([])?;
    if !has_kind {
        conn.execute_batch(
            "ALTER TABLE units ADD COLUMN kind TEXT NOT NULL DEFAULT 'evaluate';
             ALTER TABLE units ADD COLUMN grp INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE units ADD COLUMN stage INTEGER NOT NULL DEFAULT 0;
             UPDATE units SET grp = suite, stage = (variant != 0);",
        )?;
    }
    Ok(())
}

fn save_unit_on(conn: &Connection, u: &UnitRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE units SET state = ?3, attempts = ?4, lease_id = ?5, deadline_ms = ?6, worker = ?7, error = ?8
         WHERE sweep_id = ?1 AND ordinal = ?2",
    )?
    .execute(params![
            u.sweep_id,
            u.ordinal,
            u.state.as_str(),
            u.attempts,
            u.lease_id as i64,
            u.deadline_ms as i64,
            u.worker,
            u.error
    ])?;
    Ok(())
}

impl Store for SqliteStore {
    fn create_sweep(&mut self, s: &SweepRow, units: &[UnitRow]) -> Result<(), StoreError> {
        let tx = self.conn.savepoint()?;
        tx.execute(
            "INSERT INTO sweeps (id, name, spec_text, spec_path, state, created_ms, started_at, finished_at, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                s.id,
                s.name,
                s.spec_text,
                s.spec_path,
                s.state.as_str(),
                s.created_ms as i64,
                s.started_at,
                s.finished_at,
                s.error
            ],
        )?;
        {
            let mut st = tx.prepare(
                "INSERT INTO units (sweep_id, ordinal, variant, suite, start, end_, model, state, attempts, lease_id, deadline_ms, worker, error, kind, grp, stage)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?;
            for u in units {
                st.execute(params![
                    u.sweep_id,
                    u.ordinal,
                    u.variant,
                    u.suite,
                    u.start,
                    u.end,
                    u.model,
                    u.state.as_str(),
                    u.attempts,
                    u.lease_id as i64,
                    u.deadline_ms as i64,
                    u.worker,
                    u.error,
                    u.kind.as_str(),
                    u.group,
                    u.stage
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn save_sweep(&mut self, s: &SweepRow) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sweeps SET state = ?2, finished_at = ?3, error = ?4 WHERE id = ?1",
            params![s.id, s.state.as_str(), s.finished_at, s.error],
        )?;
        Ok(())
    }

    fn save_unit(&mut self, u: &UnitRow) -> Result<(), StoreError> {
        save_unit_on(&self.conn, u)
    }

    fn complete_unit(&mut self, u: &UnitRow, result: &str) -> Result<(), StoreError> {
        let tx = self.conn.savepoint()?;
        tx.prepare_cached(
            "INSERT OR IGNORE INTO results (sweep_id, ordinal, result) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![u.sweep_id, u.ordinal, result])?;
        save_unit_on(&tx, u)?;
        tx.commit()?;
        Ok(())
    }

    fn begin_batch(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    fn end_batch(&mut self) -> Result<(), StoreError> {
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        Ok(())
    }

    fn load(&self) -> Result<(Vec<SweepRow>, Vec<UnitRow>), StoreError> {
        let mut st = self.conn.prepare(
            "SELECT id, name, spec_text, spec_path, state, created_ms, started_at, finished_at, error
             FROM sweeps ORDER BY created_ms, id",
        )?;
        let sweeps = st
            .query_map([], |r| {
                Ok(SweepRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    spec_text: r.get(2)?,
                    spec_path: r.get(3)?,
                    state: SweepState::parse(&r.get::<_, String>(4)?),
                    created_ms: r.get::<_, i64>(5)? as u64,
                    started_at: r.get(6)?,
                    finished_at: r.get(7)?,
                    error: r.get(8)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = self.conn.prepare(
            "SELECT sweep_id, ordinal, variant, suite, start, end_, model, state, attempts, lease_id, deadline_ms, worker, error, kind, grp, stage
             FROM units ORDER BY sweep_id, ordinal",
        )?;
        let units = st
            .query_map([], |r| {
                Ok(UnitRow {
                    sweep_id: r.get(0)?,
                    ordinal: r.get(1)?,
                    variant: r.get(2)?,
                    suite: r.get(3)?,
                    start: r.get(4)?,
                    end: r.get(5)?,
                    model: r.get(6)?,
                    state: UnitState::parse(&r.get::<_, String>(7)?),
                    attempts: r.get(8)?,
                    lease_id: r.get::<_, i64>(9)? as u64,
                    deadline_ms: r.get::<_, i64>(10)? as u64,
                    worker: r.get(11)?,
                    error: r.get(12)?,
                    kind: r.get::<_, String>(13)?.parse().map_err(|e: String| {
                        rusqlite::Error::FromSqlConversionFailure(
                            13,
                            rusqlite::types::Type::Text,
                            e.into(),
                        )
                    })?,
                    group: r.get(14)?,
                    stage: r.get(15)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((sweeps, units))
    }

    fn result(&self, sweep_id: &str, ordinal: u32) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT result FROM results WHERE sweep_id = ?1 AND ordinal = ?2",
                params![sweep_id, ordinal],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn results(&self, sweep_id: &str) -> Result<Vec<(u32, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT ordinal, result FROM results WHERE sweep_id = ?1 ORDER BY ordinal")?;
        let rows = st
            .query_map(params![sweep_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
