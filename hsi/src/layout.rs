//! Byte layouts described as tables.
//!
//! Every fixed-size structure that crosses the hardware/software boundary (wire frame
//! header, ring entries, window records) is declared once with [`layout!`]. The macro
//! emits one [`Field`] constant per field, a `SIZE`, and a [`Layout`] table that the
//! encoders, the RTL generator and `docs/hsi.md` all read. A compile-time check rejects
//! overlapping or out-of-range fields.

/// One little-endian field of a fixed layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Field name as it appears in the docs and the RTL.
    pub name: &'static str,
    /// Byte offset from the start of the structure.
    pub offset: usize,
    /// Width in bytes: 1, 2, 4 or 8.
    pub width: usize,
    /// One-line meaning.
    pub doc: &'static str,
}

impl Field {
    /// First byte after the field.
    pub const fn end(&self) -> usize {
        self.offset + self.width
    }

    /// First bit of the field (bit 0 is the least significant bit of byte 0).
    pub const fn bit_lo(&self) -> usize {
        self.offset * 8
    }

    /// Last bit of the field, inclusive.
    pub const fn bit_hi(&self) -> usize {
        self.end() * 8 - 1
    }

    /// Reads the field as an unsigned little-endian integer.
    ///
    /// # Panics
    /// If `buf` is shorter than the field's end; callers check the structure length
    /// first (see [`Layout::check_len`]).
    pub fn get(&self, buf: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        b[..self.width].copy_from_slice(&buf[self.offset..self.end()]);
        u64::from_le_bytes(b)
    }

    /// Writes the low `width` bytes of `value` little-endian.
    ///
    /// # Panics
    /// If `buf` is shorter than the field's end.
    pub fn put(&self, buf: &mut [u8], value: u64) {
        buf[self.offset..self.end()].copy_from_slice(&value.to_le_bytes()[..self.width]);
    }
}

/// A fixed-size structure: its fields in offset order.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Title used in the docs.
    pub title: &'static str,
    /// Size in bytes.
    pub size: usize,
    /// Fields in offset order.
    pub fields: &'static [Field],
}

impl Layout {
    /// True when fields are in order, do not overlap, have a legal width and fit.
    pub const fn is_valid(&self) -> bool {
        let mut i = 0;
        let mut next_free = 0;
        while i < self.fields.len() {
            let f = &self.fields[i];
            if !matches!(f.width, 1 | 2 | 4 | 8) || f.offset < next_free || f.end() > self.size {
                return false;
            }
            next_free = f.end();
            i += 1;
        }
        true
    }

    /// Errors when `have` bytes cannot hold the structure.
    pub fn check_len(&self, have: usize) -> Result<(), crate::frame::FrameError> {
        if have < self.size {
            Err(crate::frame::FrameError::Truncated { need: self.size, have })
        } else {
            Ok(())
        }
    }
}

/// Declares a fixed byte layout. See the module docs.
#[macro_export]
macro_rules! layout {
    (
        $(#[$meta:meta])*
        $vis:vis mod $name:ident ($title:literal, size = $size:expr) {
            $( $(#[$fmeta:meta])* $field:ident @ $off:expr, $width:expr => $doc:literal; )*
        }
    ) => {
        $(#[$meta])*
        $vis mod $name {
            #[allow(unused_imports)]
            use $crate::layout::{Field, Layout};
            $(
                $(#[$fmeta])*
                #[doc = $doc]
                pub const $field: Field = Field { name: stringify!($field), offset: $off, width: $width, doc: $doc };
            )*
            /// Size of the structure in bytes.
            pub const SIZE: usize = $size;
            /// The table of fields, for encoders, generators and docs.
            pub const LAYOUT: Layout = Layout { title: $title, size: $size, fields: &[$($field),*] };
            const _: () = assert!(LAYOUT.is_valid(), concat!("layout ", stringify!($name), " has overlapping or out-of-range fields"));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::layout! {
        mod demo ("demo", size = 16) {
            A @ 0, 4 => "a";
            B @ 4, 2 => "b";
            C @ 8, 8 => "c";
        }
    }

    #[test]
    fn get_put_round_trip_little_endian() {
        let mut buf = [0u8; demo::SIZE];
        demo::A.put(&mut buf, 0x1122_3344);
        demo::C.put(&mut buf, 0x0102_0304_0506_0708);
        assert_eq!(&buf[0..4], &[0x44, 0x33, 0x22, 0x11]);
        assert_eq!(demo::A.get(&buf), 0x1122_3344);
        assert_eq!(demo::C.get(&buf), 0x0102_0304_0506_0708);
        assert_eq!(demo::B.get(&buf), 0);
    }

    #[test]
    fn overlap_is_invalid() {
        const BAD: Layout = Layout {
            title: "bad",
            size: 8,
            fields: &[Field { name: "x", offset: 0, width: 4, doc: "" }, Field { name: "y", offset: 2, width: 4, doc: "" }],
        };
        assert!(!BAD.is_valid());
        const PAST_END: Layout = Layout { title: "past", size: 4, fields: &[Field { name: "x", offset: 2, width: 4, doc: "" }] };
        assert!(!PAST_END.is_valid());
        assert!(demo::LAYOUT.is_valid());
    }
}
