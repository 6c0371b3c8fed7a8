//! Reads structured values off a fuzz input, for the targets that build their own
//! values (`peer`, `store`) rather than feeding the bytes to a decoder. Past the end
//! every read yields zeros or nothing, so any input is a valid (possibly short) program.

/// A cursor over the input's bytes.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0 past the end.
    pub fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.data.split_first() else {
            return 0;
        };
        self.data = rest;
        b
    }

    /// The next byte's low bit (false past the end).
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Up to `n` bytes, fewer when the input ends.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A little-endian number of `width` bytes (1 to 8).
    pub fn uint(&mut self, width: usize) -> u64 {
        self.bytes(width)
            .iter()
            .rev()
            .fold(0u64, |n, &b| (n << 8) | u64::from(b))
    }

    /// A number, often one at an edge: 0, 1, a 32-bit edge, the 64-bit maximum, or
    /// any 1- to 8-byte value.
    pub fn number(&mut self) -> u64 {
        match self.u8() % 8 {
            0 => 0,
            1 => 1,
            2 => u64::from(u32::MAX),
            3 => u64::from(u32::MAX) + 1,
            4 => u64::MAX,
            5 => self.uint(1),
            6 => self.uint(4),
            _ => self.uint(8),
        }
    }
}
