//! `console_io(CONSOLEIO_read)`: input typed on the hypervisor console, for the domain
//! that owns the console (see `crate::console_input`); other domains read nothing.

use super::global::GlobalCall;
use crate::mm::PhysMem;
use pv_abi::errno::Errno;

/// Most bytes one read returns.
const CHUNK: usize = crate::console_input::BUFFER_SIZE;

pub(super) fn console_read<M: PhysMem>(
    call: &mut GlobalCall<'_, M>,
    count: u64,
    buffer: u64,
) -> Result<u64, Errno> {
    if call.console_input.owner() != Some(call.domain().id) {
        return Ok(0);
    }
    let want = usize::try_from(count).unwrap_or(CHUNK).min(CHUNK);
    let guest = call.guest();
    // Check the buffer before taking any input out of the console.
    let mut probe = [0u8; CHUNK];
    guest.read(buffer, &mut probe[..want])?;
    let mut bytes = [0u8; CHUNK];
    let n = call.console_input.read(&mut bytes[..want]);
    guest.write(buffer, &bytes[..n])?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::super::global::tests::call;
    use crate::console_input::Typed;
    use crate::guests::tests::{BUF, Multi};
    use pv_abi::xen::Hypercall;

    #[test]
    fn the_owner_reads_what_was_typed() {
        let mut w = Multi::new(2);
        w.console.set_owner(Some(1));
        for &b in b"hi" {
            assert_eq!(w.console.feed(b), Typed::ForDomain(1));
        }
        let read = |w: &mut Multi, slot, n| {
            call(w, slot, Hypercall::ConsoleIo, [1, n, BUF, 0, 0])
                .unwrap()
                .0
        };
        assert_eq!(read(&mut w, 1, 16), 0, "not the owner");
        assert_eq!(read(&mut w, 0, 1), 1);
        assert_eq!(w.get(0, 0, 1), b"h");
        assert_eq!(read(&mut w, 0, 16), 1);
        assert_eq!(w.get(0, 0, 1), b"i");
        assert_eq!(read(&mut w, 0, 16), 0);
        w.console.feed(b'x');
        assert_eq!(
            call(&mut w, 0, Hypercall::ConsoleIo, [1, 16, 0x1000, 0, 0])
                .unwrap()
                .0,
            -14,
            "a bad buffer loses nothing"
        );
        assert_eq!(read(&mut w, 0, 16), 1);
    }
}
