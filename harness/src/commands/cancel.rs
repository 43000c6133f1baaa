//! `compsafe cancel ID`: cancels a submitted sweep.

use compsafe_proto::pb::CancelRequest;
use compsafe_proto::PROTOCOL_VERSION;

use crate::args::{runtime, status_error, IdArgs};
use crate::exit::{Failure, Outcome};

/// Cancels the sweep and prints its status.
pub fn exec(args: &IdArgs) -> Result<Outcome, Failure> {
    let s = runtime()?.block_on(async {
        let mut c = args.client.sweeps().await?;
        c.cancel(CancelRequest {
            protocol: PROTOCOL_VERSION,
            sweep_id: args.id.clone(),
        })
        .await
        .map_err(status_error)
    })?;
    super::status::print_status(&s.into_inner(), args.json);
    Ok(Outcome::Ok)
}
