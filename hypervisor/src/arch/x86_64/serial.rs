//! The 16550 UART on COM1: the hypervisor's console.

use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;
const LINE_STATUS: u16 = 5;
const TRANSMIT_EMPTY: u8 = 1 << 5;
const DATA_READY: u8 = 1 << 0;

/// A byte typed on COM1, if one is waiting (polled: the UART raises no interrupts).
pub fn try_read() -> Option<u8> {
    // SAFETY: COM1's registers are owned by the hypervisor; reading the line status and
    // then the receive buffer only consumes input.
    unsafe {
        if Port::<u8>::new(COM1 + LINE_STATUS).read() & DATA_READY == 0 {
            return None;
        }
        Some(Port::<u8>::new(COM1).read())
    }
}

/// COM1, programmed for 115200 8N1 with FIFOs on.
#[derive(Debug)]
pub struct Serial {
    _private: (),
}

impl Serial {
    /// Programs the UART. Called once at boot, before anything is printed.
    pub fn init() -> Serial {
        let writes: [(u16, u8); 6] = [
            (1, 0x00), // no UART interrupts
            (3, 0x80), // DLAB on
            (0, 0x01), // divisor 1 = 115200 baud
            (1, 0x00),
            (3, 0x03), // 8N1, DLAB off
            (2, 0xc7), // FIFOs on and cleared
        ];
        for (offset, value) in writes {
            // SAFETY: COM1's registers are owned by the hypervisor; no guest reaches them.
            unsafe { Port::new(COM1 + offset).write(value) };
        }
        Serial { _private: () }
    }

    fn put(&mut self, byte: u8) {
        let mut status: Port<u8> = Port::new(COM1 + LINE_STATUS);
        let mut data: Port<u8> = Port::new(COM1);
        // SAFETY: as in `init`; polling the line status then writing one byte.
        unsafe {
            while status.read() & TRANSMIT_EMPTY == 0 {
                core::hint::spin_loop();
            }
            data.write(byte);
        }
    }
}

impl core::fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.put(b'\r');
            }
            self.put(byte);
        }
        Ok(())
    }
}
