//! The one place a reply is matched to what its command expects: each view renders its own
//! reply type, taken out of [`Reply`] here; any other reply is an `internal` error.

use pam_totp_proto::{
    ApiError, CodesReply, EnrollReply, LogPage, MetricsReply, ProfileView, Reply, StatusReply,
};

/// A reply type a view renders.
pub trait Expected: Sized {
    /// The reply as this type, or the kind of the reply when it is another.
    fn take(reply: Reply) -> Result<Self, &'static str>;
}

/// The reply to `remove`: the account whose profile was removed.
pub struct Removed(pub String);

/// The reply as the type the view renders, or the error naming the reply that came instead.
pub fn expect<T: Expected>(reply: Reply) -> Result<T, ApiError> {
    T::take(reply)
        .map_err(|kind| ApiError::internal(format!("the agent sent an unexpected reply ({kind})")))
}

impl Expected for EnrollReply {
    fn take(reply: Reply) -> Result<Self, &'static str> {
        match reply {
            Reply::Enrolled(enrolled) => Ok(enrolled),
            other => Err(other.kind()),
        }
    }
}

impl Expected for CodesReply {
    fn take(reply: Reply) -> Result<Self, &'static str> {
        match reply {
            Reply::Codes(codes) => Ok(codes),
            other => Err(other.kind()),
        }
    }
}

impl Expected for ProfileView {
    fn take(reply: Reply) -> Result<Self, &'static str> {
        match reply {
            Reply::Profile(profile) => Ok(profile),
            other => Err(other.kind()),
        }
    }
}

impl Expected for Vec<ProfileView> {
    fn take(reply: Reply) -> Result<Self, &'static str> {
        match reply {
            Reply::Profiles(profiles) => Ok(profiles),
            other => Err(other.kind()),
        }
    }
}

impl Expected for LogPage {
    fn take(reply: Reply) -> Result<Self, &'static str> {
        match reply {
            Reply::Log(page) => Ok(page),
            other => Err(other.kind()),
        }
    }
}

impl Expected for MetricsReply {
    fn take(reply: Reply) -> Result<Self, &'static str> {
        match reply {
            Reply::Metrics(metrics) => Ok(metrics),
            other => Err(other.kind()),
        }
    }
}

impl Expected for StatusReply {
    fn take(reply: Reply) -> Result<Self, &'static str> {
        match reply {
            Reply::Status(status) => Ok(status),
            other => Err(other.kind()),
        }
    }
}

impl Expected for Removed {
    fn take(reply: Reply) -> Result<Self, &'static str> {
        match reply {
            Reply::Removed { account } => Ok(Removed(account)),
            other => Err(other.kind()),
        }
    }
}
