//! Reads a Xen PV kernel: an ELF64 x86_64 executable whose `XEN_ELFNOTE_*` notes say
//! where it wants to live and where to enter it (no Xen header of its own: the notes are
//! [`crate::elfnote`]'s). Shared by every domain builder here: the hypervisor's, for the
//! domains of its boot image, and the guest kernel's, when it builds a domain as Xen's
//! dom0.
//!
//! Everything in the image is untrusted: every offset and size is checked before use,
//! and the placement rules follow Xen's loader (`virt_offset = virt_base - paddr_offset`,
//! segments placed at `p_paddr + virt_offset`).

use crate::elfnote;

const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const PAGE_SIZE: u64 = crate::page::XEN_PAGE_SIZE as u64;

/// Whether `va` is a canonical x86_64 address (bits 63..47 all equal).
const fn is_canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1_ffff
}
/// Most program headers we accept.
pub const MAX_SEGMENTS: usize = 16;

/// Why an image cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF64 little-endian x86_64 executable.
    NotX86_64Executable,
    /// A header, segment or note lies outside the file.
    Truncated,
    /// More than [`MAX_SEGMENTS`] loadable segments.
    TooManySegments,
    /// No `XEN_ELFNOTE_*` notes: not a Xen PV kernel.
    NoXenNotes,
    /// The notes do not say `xen-3.0` and the `generic` loader (or Linux).
    WrongGuestType,
    /// A note has the wrong size for its type.
    BadNote,
    /// No loadable segment, or segments that overlap or wrap.
    BadSegments,
    /// The kernel would sit below its virtual base, outside the upper half, or wrap.
    BadPlacement,
    /// The entry point or the hypercall page is outside the loaded image.
    BadEntry,
    /// The kernel requires a feature this hypervisor does not offer.
    UnsupportedFeature,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let text = match self {
            ElfError::NotX86_64Executable => "not an ELF64 x86_64 executable",
            ElfError::Truncated => "header, segment or note outside the file",
            ElfError::TooManySegments => "too many loadable segments",
            ElfError::NoXenNotes => "no Xen ELF notes (not a PV kernel)",
            ElfError::WrongGuestType => "notes do not ask for xen-3.0 and the generic loader",
            ElfError::BadNote => "malformed Xen ELF note",
            ElfError::BadSegments => "no loadable segment, or overlapping segments",
            ElfError::BadPlacement => {
                "kernel placed below its virtual base or outside the upper half"
            }
            ElfError::BadEntry => "entry point or hypercall page outside the kernel image",
            ElfError::UnsupportedFeature => "kernel requires a feature we do not offer",
        };
        f.write_str(text)
    }
}

/// One loadable segment, already placed at its guest virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest virtual address of the first byte.
    pub vaddr: u64,
    /// Offset of the file bytes.
    pub offset: usize,
    /// Bytes taken from the file.
    pub file_size: usize,
    /// Bytes in memory (the rest is zero).
    pub mem_size: u64,
}

/// A checked PV kernel image.
#[derive(Clone, Debug)]
pub struct PvKernel<'a> {
    /// The whole file.
    pub image: &'a [u8],
    /// Loadable segments in file order.
    pub segments: heapless::Vec<Segment, MAX_SEGMENTS>,
    /// `XEN_ELFNOTE_VIRT_BASE`: where the boot region starts.
    pub virt_base: u64,
    /// First byte of the loaded kernel.
    pub kernel_start: u64,
    /// One past the last byte of the loaded kernel.
    pub kernel_end: u64,
    /// Where the guest starts running.
    pub entry: u64,
    /// Where the hypervisor writes the hypercall stubs, if the kernel asks for them.
    pub hypercall_page: Option<u64>,
    /// The kernel's `XEN_ELFNOTE_GUEST_OS` (for the log).
    pub guest_os: &'a str,
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, ElfError> {
    let raw = bytes.get(at..at + 2).ok_or(ElfError::Truncated)?;
    Ok(u16::from_le_bytes([raw[0], raw[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, ElfError> {
    let raw = bytes.get(at..at + 4).ok_or(ElfError::Truncated)?;
    Ok(u32::from_le_bytes(
        raw.try_into().map_err(|_| ElfError::Truncated)?,
    ))
}

fn u64_at(bytes: &[u8], at: usize) -> Result<u64, ElfError> {
    let raw = bytes.get(at..at + 8).ok_or(ElfError::Truncated)?;
    Ok(u64::from_le_bytes(
        raw.try_into().map_err(|_| ElfError::Truncated)?,
    ))
}

fn usize_of(value: u64) -> Result<usize, ElfError> {
    usize::try_from(value).map_err(|_| ElfError::Truncated)
}

/// The Xen notes we act on, as found.
#[derive(Default)]
struct Notes<'a> {
    any: bool,
    entry: Option<u64>,
    hypercall_page: Option<u64>,
    virt_base: Option<u64>,
    paddr_offset: Option<u64>,
    xen_version: &'a str,
    loader: &'a str,
    guest_os: &'a str,
    features: &'a str,
}

fn note_str(desc: &[u8]) -> Result<&str, ElfError> {
    let end = desc.iter().position(|&b| b == 0).unwrap_or(desc.len());
    core::str::from_utf8(&desc[..end]).map_err(|_| ElfError::BadNote)
}

fn note_u64(desc: &[u8]) -> Result<u64, ElfError> {
    match desc.len() {
        8 => u64_at(desc, 0),
        4 => u32_at(desc, 0).map(u64::from),
        _ => Err(ElfError::BadNote),
    }
}

fn parse_notes<'a>(notes: &mut Notes<'a>, mut data: &'a [u8]) -> Result<(), ElfError> {
    let align4 = |n: usize| n.checked_add(3).map(|v| v & !3).ok_or(ElfError::BadNote);
    while data.len() >= 12 {
        let name_size = u32_at(data, 0)? as usize;
        let desc_size = u32_at(data, 4)? as usize;
        let kind = u32_at(data, 8)?;
        let name_end = 12 + align4(name_size)?;
        let desc_end = name_end
            .checked_add(align4(desc_size)?)
            .ok_or(ElfError::BadNote)?;
        let name = data.get(12..12 + name_size).ok_or(ElfError::Truncated)?;
        let desc = data
            .get(name_end..name_end + desc_size)
            .ok_or(ElfError::Truncated)?;
        if name.strip_suffix(&[0]).unwrap_or(name) == elfnote::XEN_ELFNOTE_NAME {
            notes.any = true;
            match kind {
                elfnote::XEN_ELFNOTE_ENTRY => notes.entry = Some(note_u64(desc)?),
                elfnote::XEN_ELFNOTE_HYPERCALL_PAGE => notes.hypercall_page = Some(note_u64(desc)?),
                elfnote::XEN_ELFNOTE_VIRT_BASE => notes.virt_base = Some(note_u64(desc)?),
                elfnote::XEN_ELFNOTE_PADDR_OFFSET => notes.paddr_offset = Some(note_u64(desc)?),
                elfnote::XEN_ELFNOTE_XEN_VERSION => notes.xen_version = note_str(desc)?,
                elfnote::XEN_ELFNOTE_LOADER => notes.loader = note_str(desc)?,
                elfnote::XEN_ELFNOTE_GUEST_OS => notes.guest_os = note_str(desc)?,
                elfnote::XEN_ELFNOTE_FEATURES => notes.features = note_str(desc)?,
                _ => {}
            }
        }
        data = data.get(desc_end..).unwrap_or(&[]);
    }
    Ok(())
}

/// Features a kernel may demand (with a leading `!` in its FEATURES note) that the
/// builders here provide: none yet.
const OFFERED_FEATURES: &[&str] = &[];

impl<'a> PvKernel<'a> {
    /// Checks `image` and works out where everything goes.
    pub fn parse(image: &'a [u8]) -> Result<PvKernel<'a>, ElfError> {
        if image.len() < EHDR_SIZE
            || image[0..4] != ELF_MAGIC
            || image[4] != ELFCLASS64
            || image[5] != ELFDATA2LSB
            || u16_at(image, 16)? != ET_EXEC
            || u16_at(image, 18)? != EM_X86_64
        {
            return Err(ElfError::NotX86_64Executable);
        }
        let e_entry = u64_at(image, 24)?;
        let phoff = usize_of(u64_at(image, 32)?)?;
        let phentsize = usize::from(u16_at(image, 54)?);
        let phnum = usize::from(u16_at(image, 56)?);
        if phentsize < PHDR_SIZE {
            return Err(ElfError::NotX86_64Executable);
        }

        // Raw segments in physical (p_paddr) terms first.
        let mut raw: heapless::Vec<(u64, Segment), MAX_SEGMENTS> = heapless::Vec::new();
        let mut notes = Notes::default();
        for index in 0..phnum {
            let at = index
                .checked_mul(phentsize)
                .and_then(|o| o.checked_add(phoff))
                .ok_or(ElfError::Truncated)?;
            let kind = u32_at(image, at)?;
            let offset = usize_of(u64_at(image, at + 8)?)?;
            let paddr = u64_at(image, at + 24)?;
            let file_size = usize_of(u64_at(image, at + 32)?)?;
            let mem_size = u64_at(image, at + 40)?;
            let end = offset.checked_add(file_size).ok_or(ElfError::Truncated)?;
            if end > image.len() {
                return Err(ElfError::Truncated);
            }
            match kind {
                PT_LOAD if mem_size > 0 => {
                    if (file_size as u64) > mem_size {
                        return Err(ElfError::BadSegments);
                    }
                    let segment = Segment {
                        vaddr: 0,
                        offset,
                        file_size,
                        mem_size,
                    };
                    raw.push((paddr, segment))
                        .map_err(|_| ElfError::TooManySegments)?;
                }
                PT_NOTE => parse_notes(&mut notes, &image[offset..end])?,
                _ => {}
            }
        }
        if !notes.any {
            return Err(ElfError::NoXenNotes);
        }
        if notes.xen_version != "xen-3.0"
            || !(notes.loader.starts_with("generic") || notes.guest_os.starts_with("linux"))
        {
            return Err(ElfError::WrongGuestType);
        }
        for feature in notes
            .features
            .split('|')
            .filter_map(|f| f.strip_prefix('!'))
        {
            if !OFFERED_FEATURES.contains(&feature) {
                return Err(ElfError::UnsupportedFeature);
            }
        }
        if raw.is_empty() {
            return Err(ElfError::BadSegments);
        }

        let virt_base = notes.virt_base.unwrap_or(0);
        let paddr_offset = notes.paddr_offset.unwrap_or(0);
        let virt_offset = virt_base.wrapping_sub(paddr_offset);
        let mut segments = heapless::Vec::new();
        let (mut kernel_start, mut kernel_end) = (u64::MAX, 0u64);
        for (paddr, mut segment) in raw {
            segment.vaddr = paddr.wrapping_add(virt_offset);
            let end = segment
                .vaddr
                .checked_add(segment.mem_size)
                .ok_or(ElfError::BadPlacement)?;
            kernel_start = kernel_start.min(segment.vaddr);
            kernel_end = kernel_end.max(end);
            // Capacity is the same as `raw`'s, so this cannot fail.
            segments
                .push(segment)
                .map_err(|_| ElfError::TooManySegments)?;
        }
        for (i, a) in segments.iter().enumerate() {
            for b in segments.iter().skip(i + 1) {
                if a.vaddr < b.vaddr + b.mem_size && b.vaddr < a.vaddr + a.mem_size {
                    return Err(ElfError::BadSegments);
                }
            }
        }
        let upper_half = 0xffff_8800_0000_0000;
        if virt_base % PAGE_SIZE != 0
            || virt_base < upper_half
            || kernel_start < virt_base
            || !is_canonical(kernel_end - 1)
        {
            return Err(ElfError::BadPlacement);
        }
        let entry = notes.entry.unwrap_or(e_entry);
        let inside = |va: u64, len: u64| va >= kernel_start && va.saturating_add(len) <= kernel_end;
        if !inside(entry, 1) {
            return Err(ElfError::BadEntry);
        }
        if let Some(page) = notes.hypercall_page
            && (page % PAGE_SIZE != 0 || !inside(page, PAGE_SIZE))
        {
            return Err(ElfError::BadEntry);
        }
        Ok(PvKernel {
            image,
            segments,
            virt_base,
            kernel_start,
            kernel_end,
            entry,
            hypercall_page: notes.hypercall_page,
            guest_os: notes.guest_os,
        })
    }

    /// The file bytes of a segment (checked in `parse`).
    pub fn segment_bytes(&self, segment: &Segment) -> &'a [u8] {
        &self.image[segment.offset..segment.offset + segment.file_size]
    }
}

/// A tiny PV kernel image for tests of the builders (feature `testing`; no allocator
/// needed, so that it builds next to a `no_std` kernel).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;

    /// The test kernel's virtual base (`XEN_ELFNOTE_VIRT_BASE`).
    pub const BASE: u64 = 0xffff_ffff_8000_0000;
    /// Room for the whole test image.
    pub const IMAGE_CAPACITY: usize = 1024;
    /// A test kernel image.
    pub type Image = heapless::Vec<u8, IMAGE_CAPACITY>;

    fn push(out: &mut Image, bytes: &[u8]) {
        out.extend_from_slice(bytes)
            .expect("the test image fits its capacity");
    }

    fn note(out: &mut Image, kind: u32, desc: &[u8]) {
        push(out, &4u32.to_le_bytes());
        push(out, &(desc.len() as u32).to_le_bytes());
        push(out, &kind.to_le_bytes());
        push(out, b"Xen\0");
        push(out, desc);
        while !out.len().is_multiple_of(4) {
            push(out, &[0]);
        }
    }

    fn phdr(kind: u32, off: u64, vaddr: u64, paddr: u64, filesz: u64, memsz: u64) -> [u8; 56] {
        let mut p = [0u8; 56];
        p[0..4].copy_from_slice(&kind.to_le_bytes());
        p[8..16].copy_from_slice(&off.to_le_bytes());
        p[16..24].copy_from_slice(&vaddr.to_le_bytes());
        p[24..32].copy_from_slice(&paddr.to_le_bytes());
        p[32..40].copy_from_slice(&filesz.to_le_bytes());
        p[40..48].copy_from_slice(&memsz.to_le_bytes());
        p
    }

    /// A minimal PV kernel: one segment of `code` at BASE + 0x1000 (paddr 0x1000), with a
    /// hypercall page at BASE + 0x2000 and memsz two pages.
    pub fn tiny_kernel(extra_notes: &[(u32, &[u8])]) -> Image {
        let mut notes = Image::new();
        note(&mut notes, elfnote::XEN_ELFNOTE_XEN_VERSION, b"xen-3.0\0");
        note(&mut notes, elfnote::XEN_ELFNOTE_LOADER, b"generic\0");
        note(&mut notes, elfnote::XEN_ELFNOTE_GUEST_OS, b"test\0");
        note(
            &mut notes,
            elfnote::XEN_ELFNOTE_VIRT_BASE,
            &BASE.to_le_bytes(),
        );
        note(
            &mut notes,
            elfnote::XEN_ELFNOTE_PADDR_OFFSET,
            &0u64.to_le_bytes(),
        );
        note(
            &mut notes,
            elfnote::XEN_ELFNOTE_ENTRY,
            &(BASE + 0x1000).to_le_bytes(),
        );
        note(
            &mut notes,
            elfnote::XEN_ELFNOTE_HYPERCALL_PAGE,
            &(BASE + 0x2000).to_le_bytes(),
        );
        for (kind, desc) in extra_notes {
            note(&mut notes, *kind, desc);
        }
        let code = [0x90u8, 0x90, 0xf4];
        let phoff = 64u64;
        let notes_off = phoff + 2 * 56;
        let code_off = notes_off + notes.len() as u64;
        let mut header = [0u8; 64];
        header[0..4].copy_from_slice(&ELF_MAGIC);
        header[4] = ELFCLASS64;
        header[5] = ELFDATA2LSB;
        header[6] = 1;
        header[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        header[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        header[24..32].copy_from_slice(&(BASE + 0x1000).to_le_bytes());
        header[32..40].copy_from_slice(&phoff.to_le_bytes());
        header[54..56].copy_from_slice(&56u16.to_le_bytes());
        header[56..58].copy_from_slice(&2u16.to_le_bytes());
        let mut out = Image::new();
        push(&mut out, &header);
        push(
            &mut out,
            &phdr(
                PT_LOAD,
                code_off,
                BASE + 0x1000,
                0x1000,
                code.len() as u64,
                0x2000,
            ),
        );
        let size = notes.len() as u64;
        push(&mut out, &phdr(PT_NOTE, notes_off, 0, 0, size, size));
        push(&mut out, &notes);
        push(&mut out, &code);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn parses_a_pv_kernel() {
        let image = tiny_kernel(&[]);
        let kernel = PvKernel::parse(&image).unwrap();
        assert_eq!(kernel.virt_base, BASE);
        assert_eq!(kernel.kernel_start, BASE + 0x1000);
        assert_eq!(kernel.kernel_end, BASE + 0x3000);
        assert_eq!(kernel.entry, BASE + 0x1000);
        assert_eq!(kernel.hypercall_page, Some(BASE + 0x2000));
        assert_eq!(
            kernel.segment_bytes(&kernel.segments[0]),
            &[0x90, 0x90, 0xf4]
        );
    }

    #[test]
    fn rejects_required_features_we_lack() {
        let image = tiny_kernel(&[(elfnote::XEN_ELFNOTE_FEATURES, b"!auto_translated_physmap\0")]);
        assert_eq!(
            PvKernel::parse(&image).unwrap_err(),
            ElfError::UnsupportedFeature
        );
        let image = tiny_kernel(&[(elfnote::XEN_ELFNOTE_FEATURES, b"writable_page_tables\0")]);
        assert!(
            PvKernel::parse(&image).is_ok(),
            "optional features are fine"
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let image = tiny_kernel(&[]);
        for len in 0..image.len() {
            assert!(PvKernel::parse(&image[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        let image = tiny_kernel(&[]);
        for at in 0..image.len() {
            for value in [0x00, 0xff, 0x7f, 0x80] {
                let mut bad = image.clone();
                bad[at] = value;
                let _ = PvKernel::parse(&bad);
            }
        }
    }

    #[test]
    fn rejects_bad_placement_and_entry() {
        let low = 0x40_0000u64.to_le_bytes();
        let image = tiny_kernel(&[(elfnote::XEN_ELFNOTE_VIRT_BASE, &low)]);
        assert_eq!(PvKernel::parse(&image).unwrap_err(), ElfError::BadPlacement);
        let outside = (BASE + 0x10_0000).to_le_bytes();
        let image = tiny_kernel(&[(elfnote::XEN_ELFNOTE_ENTRY, &outside)]);
        assert_eq!(PvKernel::parse(&image).unwrap_err(), ElfError::BadEntry);
        let mut image = tiny_kernel(&[]);
        image[0] = 0;
        assert_eq!(
            PvKernel::parse(&image).unwrap_err(),
            ElfError::NotX86_64Executable
        );
    }
}
