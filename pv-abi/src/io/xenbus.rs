//! Device connection states exchanged through xenstore (`io/xenbus.h`): each end of a
//! split driver writes its state, as a decimal number, to its `state` node.

use core::fmt;

/// The state of one end of a split device (`enum xenbus_state`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XenbusState {
    /// No state written yet.
    Unknown = 0,
    /// Setting up.
    Initialising = 1,
    /// Waiting for information from the peer or hotplug scripts.
    InitWait = 2,
    /// Set up, waiting for the peer to connect.
    Initialised = 3,
    /// Connected and working.
    Connected = 4,
    /// Shutting down (error or unplug).
    Closing = 5,
    /// Shut down.
    Closed = 6,
    /// Being reconfigured.
    Reconfiguring = 7,
    /// Reconfigured.
    Reconfigured = 8,
}

impl XenbusState {
    /// Every state, in numeric order.
    pub const ALL: [XenbusState; 9] = [
        XenbusState::Unknown,
        XenbusState::Initialising,
        XenbusState::InitWait,
        XenbusState::Initialised,
        XenbusState::Connected,
        XenbusState::Closing,
        XenbusState::Closed,
        XenbusState::Reconfiguring,
        XenbusState::Reconfigured,
    ];

    /// Parses the decimal text of a `state` node (surrounding whitespace and a
    /// trailing NUL allowed).
    pub fn parse(text: &[u8]) -> Option<XenbusState> {
        let text = text.strip_suffix(b"\0").unwrap_or(text).trim_ascii();
        if text.is_empty() || text.len() > 2 || !text.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = text.iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
        XenbusState::try_from(value).ok()
    }

    /// The decimal text written to a `state` node.
    pub const fn as_str(self) -> &'static str {
        match self {
            XenbusState::Unknown => "0",
            XenbusState::Initialising => "1",
            XenbusState::InitWait => "2",
            XenbusState::Initialised => "3",
            XenbusState::Connected => "4",
            XenbusState::Closing => "5",
            XenbusState::Closed => "6",
            XenbusState::Reconfiguring => "7",
            XenbusState::Reconfigured => "8",
        }
    }
}

impl TryFrom<u32> for XenbusState {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, u32> {
        XenbusState::ALL.get(value as usize).copied().ok_or(value)
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        for s in XenbusState::ALL {
            assert_eq!(XenbusState::parse(s.as_str().as_bytes()), Some(s));
            assert_eq!(XenbusState::try_from(s as u32), Ok(s));
        }
        assert_eq!(XenbusState::parse(b"4\0"), Some(XenbusState::Connected));
        assert_eq!(XenbusState::parse(b" 6\n"), Some(XenbusState::Closed));
        assert_eq!(XenbusState::parse(b"9"), None);
        assert_eq!(XenbusState::parse(b""), None);
        assert_eq!(XenbusState::parse(b"-1"), None);
        assert_eq!(XenbusState::parse(b"999999999999"), None);
        assert_eq!(XenbusState::try_from(9), Err(9));
    }
}
