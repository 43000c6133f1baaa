//! `compsafe status ID`: progress of a submitted sweep.

use compsafe_proto::pb::{GetRequest, SweepStatus};
use compsafe_proto::PROTOCOL_VERSION;

use crate::args::{runtime, status_error, IdArgs};
use crate::exit::{Failure, Outcome};

/// One status line, or one JSON object.
pub fn print_status(s: &SweepStatus, json: bool) {
    if json {
        println!("{}", crate::progress::status_json(s));
    } else {
        println!("{}", crate::progress::status_line(s));
    }
}

/// Prints the sweep's progress once.
pub fn exec(args: &IdArgs) -> Result<Outcome, Failure> {
    let s = runtime()?.block_on(async {
        let mut c = args.client.sweeps().await?;
        c.get(GetRequest {
            protocol: PROTOCOL_VERSION,
            sweep_id: args.id.clone(),
        })
        .await
        .map_err(status_error)
    })?;
    print_status(&s.into_inner(), args.json);
    Ok(Outcome::Ok)
}
