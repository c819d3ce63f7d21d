//! How lapin's errors map onto the driver's.

use asynctasq_core::DriverError;

/// Maps a lapin error: a lost connection or channel is [`DriverError::Unavailable`] (retried
/// by the engine); a refusal by the broker is [`DriverError::Backend`].
pub(super) fn lapin_err(what: &str, error: lapin::Error) -> DriverError {
    use lapin::ErrorKind as K;
    match error.kind() {
        K::IOError(_) | K::InvalidChannelState(..) | K::InvalidConnectionState(_) | K::MissingHeartbeatError | K::InvalidChannel(_) => {
            DriverError::unavailable(format!("RabbitMQ: {what}"), error)
        }
        _ => DriverError::backend(format!("RabbitMQ: {what}"), error),
    }
}
