//! Deciding whether a server's answer to one object was right.
//!
//! A benchmark that counts fast wrong answers as successes measures nothing, so every response
//! is classified against what was sent: a clean object must pass (a `204`, or a `200` echo of
//! exactly the bytes sent), and an object carrying EICAR must be blocked. Servers block in three
//! ways, all of which keep the object from the user: a block page (an encapsulated `403` or an
//! `X-Infection-Found` header), an echo cut off by closing the connection (the threat was found
//! after the echo had started), or an echo that ends early (c-icap's virus_scan sends the
//! original headers with an empty body when the threat turns up after it committed to them).

use crate::response::{Body, Response};

/// What the server did with an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `204`, or a full-length echo.
    Passed,
    /// A block page: encapsulated `403` or `X-Infection-Found`.
    BlockPage,
    /// The echo was cut off by the connection closing.
    BlockCut,
    /// The echo ended properly but with fewer bytes than were sent (or with no body at all).
    BlockShort,
    /// Anything else: an echo longer than the object, a status other than 200/204, a `204` the
    /// client did not allow.
    Bad,
}

impl Outcome {
    pub fn blocked(self) -> bool {
        matches!(self, Outcome::BlockPage | Outcome::BlockCut | Outcome::BlockShort)
    }
}

/// Classifies the final response to an object of `body_bytes` bytes.
pub fn classify(resp: &Response, body_bytes: usize, allow_204: bool) -> Outcome {
    if resp.status == 204 {
        return if allow_204 { Outcome::Passed } else { Outcome::Bad };
    }
    if resp.status != 200 {
        return Outcome::Bad;
    }
    if resp.infection_found || resp.http_status == Some(403) {
        return Outcome::BlockPage;
    }
    match resp.body {
        Body::None if body_bytes == 0 => Outcome::Passed,
        Body::None => Outcome::BlockShort,
        Body::Complete(n) if n == body_bytes as u64 => Outcome::Passed,
        Body::Complete(n) if n < body_bytes as u64 => Outcome::BlockShort,
        Body::Cut(n) if n < body_bytes as u64 => Outcome::BlockCut,
        // More bytes than were sent, or all of them and then a cut: a broken answer.
        _ => Outcome::Bad,
    }
}

/// Whether `outcome` is the right answer for an object that is (or is not) infected.
pub fn correct(outcome: Outcome, infected: bool) -> bool {
    match outcome {
        Outcome::Passed => !infected,
        Outcome::Bad => false,
        blocked => blocked.blocked() && infected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, http_status: Option<u16>, infection_found: bool, body: Body) -> Response {
        Response { status, http_status, infection_found, close: false, body }
    }

    #[test]
    fn outcomes() {
        let table = [
            (resp(204, None, false, Body::None), true, Outcome::Passed),
            (resp(204, None, false, Body::None), false, Outcome::Bad),
            (resp(200, Some(200), false, Body::Complete(1000)), false, Outcome::Passed),
            (resp(200, None, false, Body::Complete(1000)), false, Outcome::Passed),
            (resp(200, Some(403), false, Body::Complete(300)), true, Outcome::BlockPage),
            (resp(200, Some(200), true, Body::None), true, Outcome::BlockPage),
            (resp(200, Some(200), false, Body::Cut(400)), false, Outcome::BlockCut),
            (resp(200, Some(200), false, Body::Complete(0)), false, Outcome::BlockShort),
            (resp(200, Some(200), false, Body::Complete(1001)), true, Outcome::Bad),
            (resp(200, Some(200), false, Body::Cut(1000)), true, Outcome::Bad),
            (resp(200, Some(200), false, Body::None), true, Outcome::BlockShort),
            (resp(500, None, false, Body::None), true, Outcome::Bad),
        ];
        for (r, allow_204, want) in table {
            assert_eq!(classify(&r, 1000, allow_204), want, "{r:?}");
        }
    }

    #[test]
    fn correctness() {
        assert!(correct(Outcome::Passed, false) && !correct(Outcome::Passed, true));
        for b in [Outcome::BlockPage, Outcome::BlockCut, Outcome::BlockShort] {
            assert!(correct(b, true) && !correct(b, false));
        }
        assert!(!correct(Outcome::Bad, true) && !correct(Outcome::Bad, false));
    }
}
