//! compsafe-worker: the lease loop and its transport. It pulls work units from a coordinator
//! and runs them with `compsafe-eval`'s [`Runner`].

pub mod pull;

pub use compsafe_eval::{Runner, UnitError};
pub use pull::{pull_loop, PullConfig};
