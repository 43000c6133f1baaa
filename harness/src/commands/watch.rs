//! `compsafe watch ID`: progress of a submitted sweep as it changes, until it finishes.

use crate::args::{runtime, IdArgs};
use crate::exit::{Failure, Outcome};

/// Follows the sweep until it finishes.
pub fn exec(args: &IdArgs) -> Result<Outcome, Failure> {
    let json = args.json || !std::io::IsTerminal::is_terminal(&std::io::stdout());
    let last = runtime()?.block_on(async {
        let mut c = args.client.sweeps().await?;
        crate::progress::follow(&mut c, &args.id, json, crate::progress::Sink::Stdout).await
    })?;
    crate::progress::finished(&last)?;
    Ok(Outcome::Ok)
}
