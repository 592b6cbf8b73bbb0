//! Whole-table operations of `mmuext_op`: pinning, the vCPU's base pointers, and clearing
//! or copying a page.
//!
//! A pin and a base pointer each hold one general and one type reference, so a pinned
//! table stays validated with nothing pointing at it, and the live root stays an L4 (and
//! cannot be given back) whether or not it is pinned.

use super::{Mmu, Paging};
use crate::domain::Vcpu;
use crate::frames::PageType;
use crate::mm::{Mfn, PAGE_SIZE, PhysMem};
use pv_abi::errno::Errno;

impl<M: PhysMem, U: Mmu + ?Sized> Paging<'_, M, U> {
    /// MMUEXT_PIN_L?_TABLE: validates `mfn` as a level-`level` table and pins it.
    /// `EINVAL` if the frame is not the domain's, has another type, fails validation with
    /// `EINVAL`, or is already pinned; other validation errors pass through.
    pub fn pin(&mut self, mfn: Mfn, level: u32) -> Result<(), Errno> {
        self.get_page(mfn)?;
        if let Err(errno) = self.get_page_type(mfn, PageType::table(level)) {
            self.put_page(mfn);
            return Err(errno);
        }
        let mut info = self.frames.info(mfn);
        if info.pinned {
            self.put_page_and_type(mfn);
            return Err(Errno::EINVAL);
        }
        info.pinned = true;
        self.frames.set_info(mfn, info);
        Ok(())
    }

    /// MMUEXT_UNPIN_TABLE: drops the pin's references (`EINVAL` if the frame is not the
    /// domain's or not pinned).
    pub fn unpin(&mut self, mfn: Mfn) -> Result<(), Errno> {
        let mut info = self.frames.info(mfn);
        if !self.owns(mfn) || !info.pinned {
            return Err(Errno::EINVAL);
        }
        info.pinned = false;
        self.frames.set_info(mfn, info);
        self.put_page_and_type(mfn);
        Ok(())
    }

    /// MMUEXT_NEW_BASEPTR (and an emulated `mov` to CR3): makes `mfn` the vCPU's kernel
    /// root, taking an L4 reference on it before dropping the old root's.
    pub fn new_baseptr(&mut self, vcpu: &mut Vcpu, mfn: Mfn) -> Result<(), Errno> {
        let old = vcpu.kernel_root;
        if old == mfn {
            self.load_root(mfn);
            return Ok(());
        }
        self.get_page_and_type(mfn, PageType::L4Table)?;
        vcpu.kernel_root = mfn;
        self.load_root(mfn);
        self.put_page_and_type(old);
        Ok(())
    }

    /// MMUEXT_NEW_USER_BASEPTR: records `mfn` (0 for none) as the vCPU's user root, with
    /// an L4 reference. The trap path loads it on every switch to guest user mode.
    pub fn new_user_baseptr(&mut self, vcpu: &mut Vcpu, mfn: u64) -> Result<(), Errno> {
        let new = (mfn != 0).then_some(Mfn(mfn));
        if new == vcpu.user_root() {
            return Ok(());
        }
        if let Some(root) = new {
            self.get_page_and_type(root, PageType::L4Table)?;
        }
        if let Some(old) = vcpu.set_user_root(new) {
            self.put_page_and_type(old);
        }
        Ok(())
    }

    /// Drops the references a vCPU's roots hold (before a domain is torn down frame by
    /// frame, or in tests that check every count returns to zero).
    pub fn drop_roots(&mut self, vcpu: &mut Vcpu) {
        if let Some(user) = vcpu.set_user_root(None) {
            self.put_page_and_type(user);
        }
        self.put_page_and_type(vcpu.kernel_root);
    }

    /// MMUEXT_CLEAR_PAGE: zeroes a frame of the domain that may be writable (`EINVAL`
    /// otherwise, e.g. for a page table).
    pub fn clear_page(&mut self, mfn: Mfn) -> Result<(), Errno> {
        self.get_page_and_type(mfn, PageType::Writable)
            .map_err(|_| Errno::EINVAL)?;
        self.mem.zero_frame(mfn);
        self.put_page_and_type(mfn);
        Ok(())
    }

    /// MMUEXT_COPY_PAGE: copies frame `source` (any frame of the domain) over `target`
    /// (one that may be writable). `EINVAL` otherwise.
    pub fn copy_page(&mut self, target: Mfn, source: Mfn) -> Result<(), Errno> {
        self.get_page(source)?;
        if self.get_page_and_type(target, PageType::Writable).is_err() {
            self.put_page(source);
            return Err(Errno::EINVAL);
        }
        let mut chunk = [0u8; 512];
        for offset in (0..PAGE_SIZE).step_by(chunk.len()) {
            self.mem.read(source.addr() + offset, &mut chunk);
            self.mem.write(target.addr() + offset, &chunk);
        }
        self.put_page_and_type(target);
        self.put_page(source);
        Ok(())
    }
}
