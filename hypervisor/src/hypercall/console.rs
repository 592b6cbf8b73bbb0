//! `console_io`: the hypervisor console as a guest's earliest output device.
//!
//! Output is gathered per domain into lines, sanitised (only printable ASCII, spaces and
//! tabs reach the serial port, so no guest can drive the terminal with escape sequences)
//! and printed with the domain's id and name. Every domain may write (a policy choice,
//! recorded in docs/abi.md; Xen keeps this to privileged domains in release builds).

use super::{Console, Context};
use crate::domain::Domain;
use crate::mm::PhysMem;
use pv_abi::errno::Errno;
use pv_abi::xen::{CONSOLEIO_READ, CONSOLEIO_WRITE, Hypercall};

/// Bytes copied per step; longer writes continue in further steps.
const CHUNK: usize = 128;
/// Bytes handled before the hypercall is continued (so a huge count cannot hog the CPU).
const PER_CALL: u64 = 16 * 1024;

pub(super) fn console_io<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    cmd: u64,
    count: u64,
    buffer: u64,
) -> Result<u64, Errno> {
    match u32::try_from(cmd) {
        Ok(CONSOLEIO_WRITE) => {
            let now = count.min(PER_CALL);
            let mut done = 0u64;
            while done < now {
                let n = ((now - done) as usize).min(CHUNK);
                let mut chunk = [0u8; CHUNK];
                ctx.guest.read(buffer.wrapping_add(done), &mut chunk[..n])?;
                for &byte in &chunk[..n] {
                    push_byte(ctx.domain, ctx.console, byte);
                }
                done += n as u64;
            }
            if count > now {
                let args = [cmd, count - now, buffer.wrapping_add(now), 0, 0];
                return Ok(ctx.continuation(Hypercall::ConsoleIo as u64, args));
            }
            Ok(0)
        }
        // No console input yet: reading returns no bytes.
        Ok(CONSOLEIO_READ) => Ok(0),
        _ => Err(Errno::ENOSYS),
    }
}

fn push_byte(domain: &mut Domain, console: &mut dyn Console, byte: u8) {
    match byte {
        b'\n' => flush_line(domain, console),
        b'\r' => {}
        b' '..=b'~' | b'\t' => {
            if domain.console_line.push(byte).is_err() {
                flush_line(domain, console);
                let _ = domain.console_line.push(byte);
            }
        }
        _ => {
            let _ = domain.console_line.push(b'?');
        }
    }
}

/// Prints whatever the domain has buffered as one line.
pub fn flush_line(domain: &mut Domain, console: &mut dyn Console) {
    // Only printable ASCII is ever buffered, so this is valid UTF-8.
    let line = core::str::from_utf8(&domain.console_line).unwrap_or("");
    console.guest_line(domain.id, &domain.name, line);
    domain.console_line.clear();
}

#[cfg(test)]
mod tests {
    use super::super::tests::{BUF, World};
    use super::*;

    #[test]
    fn writes_lines_with_the_domain_prefix_and_sanitises() {
        let mut world = World::new();
        world.put(0, b"hello\nwor\x1b[2Jld\n");
        let (ret, _) = world.call(18, [u64::from(CONSOLEIO_WRITE), 17, BUF, 0, 0]);
        assert_eq!(ret, 0);
        assert_eq!(world.lines.0, ["(d1 test) hello", "(d1 test) wor?[2Jld"]);
    }

    #[test]
    fn refuses_bad_buffers_and_commands() {
        let mut world = World::new();
        assert_eq!(world.call(18, [0, 16, 0x1000, 0, 0]).0, -14, "unmapped");
        assert_eq!(
            world.call(18, [0, 16, 0xffff_8300_0000_0000, 0, 0]).0,
            -14,
            "hypervisor"
        );
        assert_eq!(
            world.call(18, [0, 8200, BUF, 0, 0]).0,
            -14,
            "runs off the mapping"
        );
        assert_eq!(world.call(18, [7, 1, BUF, 0, 0]).0, -38);
        assert_eq!(
            world.call(18, [1, 16, BUF, 0, 0]).0,
            0,
            "read gives no bytes"
        );
    }

    #[test]
    fn long_lines_are_split_not_lost() {
        let mut world = World::new();
        world.put(0, &[b'x'; 400]);
        world.put(400, b"\n");
        assert_eq!(world.call(18, [0, 401, BUF, 0, 0]).0, 0);
        let total: usize = world
            .lines
            .0
            .iter()
            .map(|l| l.len() - "(d1 test) ".len())
            .sum();
        assert_eq!(total, 400);
    }
}
