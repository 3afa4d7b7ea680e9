//! Content held in memory (the command line's message): split into line records on LF,
//! with a CR before the LF taken as part of the line ending.

use crate::outcome::Error;
use crate::request::{Content, Record};

pub struct MemoryContent {
    data: std::sync::Arc<[u8]>,
    pos: usize,
}

impl MemoryContent {
    pub fn new(data: Vec<u8>) -> MemoryContent {
        MemoryContent {
            data: data.into(),
            pos: 0,
        }
    }

    /// Another reader over the same bytes (one per delivery thread).
    pub fn share(&self) -> MemoryContent {
        MemoryContent {
            data: self.data.clone(),
            pos: 0,
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

impl Content for MemoryContent {
    fn rewind(&mut self) -> Result<(), Error> {
        self.pos = 0;
        Ok(())
    }

    fn next_record(&mut self, buf: &mut Vec<u8>) -> Result<Option<Record>, Error> {
        buf.clear();
        if self.pos >= self.data.len() {
            return Ok(None);
        }
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = &rest[..i];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                buf.extend_from_slice(line);
                self.pos += i + 1;
            }
            None => {
                buf.extend_from_slice(rest);
                self.pos = self.data.len();
            }
        }
        Ok(Some(Record::Line))
    }
}
