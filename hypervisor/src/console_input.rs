//! Input typed on the hypervisor's serial console, routed as Xen routes it: either to the
//! hypervisor, where each key is a debug key, or to the console-owning domain (Xen's
//! dom0: here the first privileged domain), which reads it with `CONSOLEIO_read` after a
//! `VIRQ_CONSOLE`. Three Ctrl-A in a row switch between the two. Input starts at the
//! owning domain if there is one, else at the hypervisor.

use crate::frames::DomId;

/// Ctrl-A, the switch character (three in a row switch the input's target).
pub const SWITCH_CHAR: u8 = 0x01;
/// Bytes buffered for the owning domain; more are dropped until it reads.
pub const BUFFER_SIZE: usize = 256;

/// What one typed byte means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Typed {
    /// A debug key for the hypervisor.
    DebugKey(u8),
    /// Buffered for this domain: raise its VIRQ_CONSOLE.
    ForDomain(DomId),
    /// Input now goes to the hypervisor (`None`) or to a domain.
    Switched(Option<DomId>),
    /// Nothing to do (a switch character, or a byte dropped on a full buffer).
    Nothing,
}

/// The console's input state.
#[derive(Debug)]
pub struct ConsoleInput {
    owner: Option<DomId>,
    to_domain: bool,
    switch_count: u8,
    buffer: heapless::Deque<u8, BUFFER_SIZE>,
}

impl Default for ConsoleInput {
    fn default() -> Self {
        ConsoleInput::new()
    }
}

impl ConsoleInput {
    /// No owner yet: input goes to the hypervisor.
    pub const fn new() -> ConsoleInput {
        ConsoleInput {
            owner: None,
            to_domain: false,
            switch_count: 0,
            buffer: heapless::Deque::new(),
        }
    }

    /// Makes `owner` the domain that receives console input, and sends input there.
    pub fn set_owner(&mut self, owner: Option<DomId>) {
        self.owner = owner;
        self.to_domain = owner.is_some();
        self.buffer.clear();
    }

    /// The domain that may read console input.
    pub fn owner(&self) -> Option<DomId> {
        self.owner
    }

    /// The owning domain is gone: input goes to the hypervisor.
    pub fn owner_gone(&mut self, id: DomId) {
        if self.owner == Some(id) {
            self.set_owner(None);
        }
    }

    /// Takes one typed byte.
    pub fn feed(&mut self, byte: u8) -> Typed {
        if byte == SWITCH_CHAR {
            self.switch_count += 1;
            if self.switch_count < 3 {
                return Typed::Nothing;
            }
            self.switch_count = 0;
            self.to_domain = !self.to_domain && self.owner.is_some();
            return Typed::Switched(self.to_domain.then_some(self.owner).flatten());
        }
        self.switch_count = 0;
        match (self.to_domain, self.owner) {
            (true, Some(owner)) => {
                if self.buffer.push_back(byte).is_ok() {
                    Typed::ForDomain(owner)
                } else {
                    Typed::Nothing
                }
            }
            _ => Typed::DebugKey(byte),
        }
    }

    /// Moves buffered input into `out`; returns how many bytes.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let Some(byte) = self.buffer.pop_front() else {
                break;
            };
            out[n] = byte;
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_goes_to_the_owner_until_switched() {
        let mut input = ConsoleInput::new();
        assert_eq!(
            input.feed(b'q'),
            Typed::DebugKey(b'q'),
            "no owner: debug keys"
        );
        input.set_owner(Some(1));
        assert_eq!(input.feed(b'l'), Typed::ForDomain(1));
        assert_eq!(input.feed(b's'), Typed::ForDomain(1));
        let mut out = [0u8; 8];
        assert_eq!(input.read(&mut out), 2);
        assert_eq!(&out[..2], b"ls");
        assert_eq!(input.read(&mut out), 0);
        // Ctrl-A three times: to the hypervisor; again: back to the domain.
        assert_eq!(input.feed(SWITCH_CHAR), Typed::Nothing);
        assert_eq!(input.feed(SWITCH_CHAR), Typed::Nothing);
        assert_eq!(input.feed(SWITCH_CHAR), Typed::Switched(None));
        assert_eq!(input.feed(b'r'), Typed::DebugKey(b'r'));
        // Two Ctrl-A and another key do not switch.
        input.feed(SWITCH_CHAR);
        input.feed(SWITCH_CHAR);
        assert_eq!(input.feed(b'e'), Typed::DebugKey(b'e'));
        for _ in 0..2 {
            input.feed(SWITCH_CHAR);
        }
        assert_eq!(input.feed(SWITCH_CHAR), Typed::Switched(Some(1)));
        input.owner_gone(1);
        assert_eq!(input.feed(b'q'), Typed::DebugKey(b'q'));
        assert_eq!(input.owner(), None);
    }

    #[test]
    fn a_full_buffer_drops_input() {
        let mut input = ConsoleInput::new();
        input.set_owner(Some(2));
        for _ in 0..BUFFER_SIZE {
            assert_eq!(input.feed(b'x'), Typed::ForDomain(2));
        }
        assert_eq!(input.feed(b'y'), Typed::Nothing);
        let mut out = [0u8; BUFFER_SIZE + 8];
        assert_eq!(input.read(&mut out), BUFFER_SIZE);
    }
}
