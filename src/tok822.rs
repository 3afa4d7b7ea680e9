//! RFC 822 address lists the way Postfix's tok822 module sees them: a tokenizer, the
//! right-to-left parser that groups each address into one node, and the two ways back to
//! text (internal form: unquoted; external form: the header text with quoted local parts).
//!
//! smtp_generic_maps rewrites addresses inside headers through exactly this machinery,
//! and the result on the wire depends on its details (where spaces go, how comments move,
//! one address per line before folding), so the structure follows Postfix's: a doubly
//! linked token list in which an address node owns a sub-list. Nodes live in an arena and
//! link by index.

use crate::table::quote_822_local;

/// Token types beyond single-character operators (which use their byte value).
const ATOM: u32 = 256;
const QSTRING: u32 = 257;
const COMMENT: u32 = 258;
const DOMLIT: u32 = 259;
pub const ADDR: u32 = 260;
const STARTGRP: u32 = 261;

/// Operators: Postfix adds `|`, `%` and `!` to RFC 822's specials.
const OPCHARS: &[u8] = b"|%!()<>@,;:\\\".[]";

/// Cap on non-address text per address expression before Postfix strips it (the old
/// Sendmail buffer overflow guard).
const MAX_NONADDR_LENGTH: usize = 250;

#[derive(Debug, Clone, Default)]
struct Node {
    ty: u32,
    text: Vec<u8>,
    prev: Option<usize>,
    next: Option<usize>,
    head: Option<usize>,
    tail: Option<usize>,
    owner: Option<usize>,
}

/// A token arena with one parsed list in it.
#[derive(Debug, Default)]
pub struct Tree {
    nodes: Vec<Node>,
    /// First node of the top-level list.
    pub first: Option<usize>,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl Tree {
    fn alloc(&mut self, ty: u32) -> usize {
        self.nodes.push(Node {
            ty,
            ..Node::default()
        });
        self.nodes.len() - 1
    }

    fn n(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Insert the list starting at `t2` after `t1`; returns the last node inserted.
    fn append(&mut self, t1: usize, t2: usize) -> usize {
        let next = self.nodes[t1].next;
        let owner = self.nodes[t1].owner;
        self.nodes[t1].next = Some(t2);
        self.nodes[t2].prev = Some(t1);
        let mut t = t2;
        self.nodes[t].owner = owner;
        while let Some(n) = self.nodes[t].next {
            t = n;
            self.nodes[t].owner = owner;
        }
        self.nodes[t].next = next;
        if let Some(n) = next {
            self.nodes[n].prev = Some(t);
        }
        t
    }

    /// Insert the list starting at `t2` before `t1`; returns the last node inserted.
    fn prepend(&mut self, t1: usize, t2: usize) -> usize {
        let prev = self.nodes[t1].prev;
        let owner = self.nodes[t1].owner;
        if let Some(p) = prev {
            self.nodes[p].next = Some(t2);
        }
        self.nodes[t2].prev = prev;
        let mut t = t2;
        self.nodes[t].owner = owner;
        while let Some(n) = self.nodes[t].next {
            t = n;
            self.nodes[t].owner = owner;
        }
        self.nodes[t].next = Some(t1);
        self.nodes[t1].prev = Some(t);
        t
    }

    fn cut_before(&mut self, tp: usize) {
        if let Some(p) = self.nodes[tp].prev {
            self.nodes[p].next = None;
            self.nodes[tp].prev = None;
        }
    }

    fn unlink(&mut self, tp: usize) -> Option<usize> {
        let (prev, next) = (self.nodes[tp].prev, self.nodes[tp].next);
        if let Some(p) = prev {
            self.nodes[p].next = next;
        }
        if let Some(n) = next {
            self.nodes[n].prev = prev;
        }
        self.nodes[tp].prev = None;
        self.nodes[tp].next = None;
        prev
    }

    fn sub_append(&mut self, t1: usize, t2: usize) {
        if let Some(tail) = self.nodes[t1].tail {
            let t = self.append(tail, t2);
            self.nodes[t1].tail = Some(t);
        } else {
            self.nodes[t1].head = Some(t2);
            let mut t = t2;
            self.nodes[t].owner = Some(t1);
            while let Some(n) = self.nodes[t].next {
                t = n;
                self.nodes[t].owner = Some(t1);
            }
            self.nodes[t1].tail = Some(t);
        }
    }

    /// Tokenize `s`; returns (first, last) of an unowned list.
    fn scan(&mut self, s: &[u8]) -> Option<(usize, usize)> {
        let mut ends: Option<(usize, usize)> = None;
        let mut i = 0;
        while i < s.len() {
            let ch = s[i];
            i += 1;
            if ch == 0 {
                break;
            }
            if is_space(ch) {
                continue;
            }
            let tp = if ch == b'(' {
                let tp = self.alloc(COMMENT);
                i = self.comment(tp, s, i);
                tp
            } else if ch == b'[' {
                let tp = self.alloc(DOMLIT);
                i = self.collect(tp, s, i, |c| c != b']');
                if i < s.len() {
                    i += 1;
                }
                tp
            } else if ch == b'"' {
                let tp = self.alloc(QSTRING);
                i = self.collect(tp, s, i, |c| c != b'"');
                if i < s.len() {
                    i += 1;
                }
                tp
            } else if ch != b'\\' && OPCHARS.contains(&ch) {
                self.alloc(u32::from(ch))
            } else {
                let tp = self.alloc(ATOM);
                i = self.collect(tp, s, i - 1, |c| !is_space(c) && !OPCHARS.contains(&c));
                // An atom with specials in it (escaped) becomes a quoted string.
                if self.nodes[tp]
                    .text
                    .iter()
                    .any(|&c| c == b' ' || c.is_ascii_control() || OPCHARS.contains(&c))
                {
                    self.nodes[tp].ty = QSTRING;
                }
                tp
            };
            ends = Some(match ends {
                None => (tp, tp),
                Some((first, last)) => (first, self.append(last, tp)),
            });
        }
        ends
    }

    /// Collect characters while `cond` holds; a backslash takes the next character as
    /// is; white space becomes a plain space. Returns the index after the last one used.
    fn collect(&mut self, tp: usize, s: &[u8], mut i: usize, cond: impl Fn(u8) -> bool) -> usize {
        while i < s.len() && s[i] != 0 {
            let mut c = s[i];
            if c == b'\\' {
                i += 1;
                if i >= s.len() || s[i] == 0 {
                    break;
                }
                c = s[i];
            } else if !cond(c) {
                break;
            }
            self.nodes[tp].text.push(if is_space(c) { b' ' } else { c });
            i += 1;
        }
        i
    }

    /// A comment, kept verbatim with its parentheses (nesting and escapes honoured).
    fn comment(&mut self, tp: usize, s: &[u8], mut i: usize) -> usize {
        let mut level = 1;
        self.nodes[tp].text.push(b'(');
        while i < s.len() && s[i] != 0 {
            let ch = s[i];
            self.nodes[tp].text.push(ch);
            i += 1;
            if ch == b'(' {
                level += 1;
            } else if ch == b')' {
                level -= 1;
                if level == 0 {
                    break;
                }
            } else if ch == b'\\' {
                if i >= s.len() || s[i] == 0 {
                    break;
                }
                self.nodes[tp].text.push(s[i]);
                i += 1;
            }
        }
        i
    }

    /// Group the nodes strictly between `left` and `right` under a new node; with a sync
    /// type, insert that operator (a missing comma) before the group. Returns `left`.
    fn group(&mut self, ty: u32, left: usize, right: usize, sync: Option<u8>) -> usize {
        if left != right
            && let Some(first) = self.nodes[left].next
            && first != right
        {
            self.cut_before(right);
            self.cut_before(first);
            let g = self.alloc(ty);
            self.sub_append(g, first);
            self.append(left, g);
            self.append(g, right);
            if let Some(c) = sync {
                let s = self.alloc(u32::from(c));
                self.append(left, s);
            }
        }
        left
    }

    fn ty(&self, i: usize) -> u32 {
        self.nodes[i].ty
    }

    fn prev_of(&self, i: usize) -> usize {
        // Every real node has a predecessor: the list is framed by sentinels.
        self.nodes[i].prev.unwrap_or(0)
    }

    /// Move the comment at `tp` to just before `right`; returns (new tp, new right).
    fn move_comment(&mut self, tp: usize, right: usize) -> (usize, usize) {
        let prev = self.unlink(tp).unwrap_or(0);
        self.prepend(right, tp);
        (prev, tp)
    }

    /// Parse an address list (tok822_parse): every address becomes an ADDR node.
    pub fn parse(s: &[u8]) -> Tree {
        let mut t = Tree::default();
        // Node 0 is the head sentinel (type 0), allocated before any token.
        let head = t.alloc(0);
        let Some((first, last)) = t.scan(s) else {
            return t;
        };
        let tail = t.alloc(0);
        t.nodes[head].next = Some(first);
        t.nodes[first].prev = Some(head);
        t.nodes[last].next = Some(tail);
        t.nodes[tail].prev = Some(last);

        const DO_WORD: u8 = 1;
        const DO_GROUP: u8 = 2;
        let mut state = DO_WORD;
        let mut right = tail;
        let mut tp = t.prev_of(tail);
        while t.ty(tp) != 0 {
            let ty = t.ty(tp);
            if ty == COMMENT {
                (tp, right) = t.move_comment(tp, right);
                continue;
            } else if ty == u32::from(b';') {
                right = t.group(ADDR, tp, right, Some(b','));
                state = DO_GROUP | DO_WORD;
            } else if ty == u32::from(b':') && state & DO_GROUP != 0 {
                t.nodes[tp].ty = STARTGRP;
                t.group(ADDR, tp, right, None);
                while t.ty(tp) != 0 && t.ty(tp) != u32::from(b',') {
                    tp = t.prev_of(tp);
                }
                right = tp;
                continue;
            } else if ty == u32::from(b'>') {
                right = t.group(ADDR, tp, right, Some(b','));
                while t.ty(tp) != 0 && t.ty(tp) != u32::from(b'<') {
                    if t.ty(tp) == COMMENT {
                        (tp, right) = t.move_comment(tp, right);
                        continue;
                    }
                    tp = t.prev_of(tp);
                }
                t.group(ADDR, tp, right, None);
                while t.ty(tp) != 0 && (t.ty(tp) > 0xff || !b">;,:".contains(&(t.ty(tp) as u8))) {
                    tp = t.prev_of(tp);
                }
                right = tp;
                state |= DO_WORD;
                continue;
            } else if ty == ATOM || ty == QSTRING || ty == DOMLIT {
                if state & DO_WORD == 0 {
                    let l = t.group(ADDR, tp, right, Some(b','));
                    right = t.nodes[l].next.unwrap_or(right);
                }
                state &= !DO_WORD;
            } else if ty == u32::from(b',') {
                right = t.group(ADDR, tp, right, None);
                state |= DO_WORD;
            } else {
                state |= DO_WORD;
            }
            tp = t.prev_of(tp);
        }
        t.group(ADDR, tp, right, None);
        let first = t.nodes[head].next.filter(|&f| f != tail);
        if let Some(f) = first {
            t.cut_before(f);
            t.cut_before(tail);
        }
        t.first = first;
        t
    }

    /// The top-level address nodes (tok822_grep(tree, TOK822_ADDR)).
    pub fn addresses(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut tp = self.first;
        while let Some(i) = tp {
            if self.n(i).ty == ADDR {
                out.push(i);
            }
            tp = self.n(i).next;
        }
        out
    }

    fn append_space(&self, tp: usize) -> bool {
        let node = self.n(tp);
        let Some(next) = node.next else {
            return false;
        };
        if node.owner.is_some() {
            return false;
        }
        let next_ty = self.n(next).ty;
        if node.ty == u32::from(b',') || node.ty == STARTGRP || next_ty == u32::from(b'<') {
            return true;
        }
        let non_op = |t: u32| matches!(t, ATOM | QSTRING | COMMENT | DOMLIT | ADDR);
        non_op(node.ty) && non_op(next_ty)
    }

    /// Internal (unquoted) form of the list starting at `start`.
    fn internalize(&self, out: &mut Vec<u8>, start: Option<usize>, line: bool) {
        let mut tp = start;
        while let Some(i) = tp {
            let node = self.n(i);
            match node.ty {
                ADDR => self.internalize(out, node.head, false),
                COMMENT | ATOM | QSTRING => out.extend_from_slice(&node.text),
                DOMLIT => {
                    out.push(b'[');
                    out.extend_from_slice(&node.text);
                    out.push(b']');
                }
                STARTGRP => out.push(b':'),
                c => {
                    out.push(c as u8);
                    if c == u32::from(b',') && line {
                        out.push(b'\n');
                        tp = node.next;
                        continue;
                    }
                }
            }
            if self.append_space(i) {
                out.push(b' ');
            }
            tp = node.next;
        }
    }

    /// The address in node `addr`, internal form.
    pub fn address_text(&self, addr: usize) -> Vec<u8> {
        let mut out = Vec::new();
        self.internalize(&mut out, self.n(addr).head, false);
        out
    }

    /// The address in node `addr`, external form (tok822_externalize of its tokens).
    pub fn address_external(&self, addr: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut tp = self.n(addr).head;
        while let Some(i) = tp {
            let node = self.n(i);
            match node.ty {
                ADDR => {
                    let inner = self.address_text(i);
                    let t = String::from_utf8_lossy(&inner);
                    out.extend_from_slice(quote_822_local(&t, false).as_bytes());
                }
                ATOM | COMMENT => out.extend_from_slice(&node.text),
                QSTRING => {
                    out.push(b'"');
                    copy_quoted(&mut out, &node.text, b"\"\\\r\n");
                    out.push(b'"');
                }
                DOMLIT => {
                    out.push(b'[');
                    copy_quoted(&mut out, &node.text, b"\\\r\n");
                    out.push(b']');
                }
                STARTGRP => out.push(b':'),
                c if c == u32::from(b',') => out.extend_from_slice(b", "),
                c => out.push(c as u8),
            }
            if node.ty != u32::from(b',') && self.append_space(i) {
                out.push(b' ');
            }
            tp = node.next;
        }
        out
    }

    /// Replace the contents of address node `addr` with the tokens of `external`, as
    /// smtp_map11_tree() does (the new tokens are scanned, not parsed).
    pub fn set_address(&mut self, addr: usize, external: &[u8]) {
        match self.scan(external) {
            Some((first, last)) => {
                self.nodes[addr].head = Some(first);
                self.nodes[addr].tail = Some(last);
            }
            None => {
                self.nodes[addr].head = None;
                self.nodes[addr].tail = None;
            }
        }
    }

    /// Header form (TOK822_STR_HEAD): one address per line after each comma, quoted
    /// local parts, and too much non-address text per address reduced to `<address>`.
    /// `warn` receives Postfix's warning when that happens.
    pub fn externalize_head(&self, out: &mut Vec<u8>, warn: &mut dyn FnMut(String)) {
        let mut start = out.len();
        let mut addr: Option<usize> = None;
        let mut addr_len = 0usize;
        let enforce = |out: &mut Vec<u8>,
                       start: usize,
                       addr: Option<usize>,
                       addr_len: usize,
                       warn: &mut dyn FnMut(String)| {
            if let Some(a) = addr
                && out.len() - addr_len > start + MAX_NONADDR_LENGTH
            {
                let shown: String = out[start..]
                    .iter()
                    .take(100)
                    .map(|&c| {
                        if c.is_ascii_graphic() || c == b' ' {
                            c as char
                        } else {
                            '?'
                        }
                    })
                    .collect();
                warn(format!(
                    "stripping too many comments from address: {shown}..."
                ));
                out.truncate(start);
                out.push(b'<');
                let mut tmp = Vec::new();
                let node = self.n(a);
                // For an empty <> the "address" is the '<' token itself.
                if node.ty == ADDR {
                    self.internalize(&mut tmp, node.head, false);
                } else {
                    self.internalize(&mut tmp, Some(a), false);
                }
                let t = String::from_utf8_lossy(&tmp);
                out.extend_from_slice(quote_822_local(&t, false).as_bytes());
                out.push(b'>');
            }
        };
        let mut tp = self.first;
        while let Some(i) = tp {
            let node = self.n(i);
            match node.ty {
                c if c == u32::from(b',') => {
                    enforce(out, start, addr, addr_len, warn);
                    out.extend_from_slice(b",\n");
                    start = out.len();
                    addr = None;
                    addr_len = 0;
                    tp = node.next;
                    continue;
                }
                ADDR => {
                    addr = Some(i);
                    let mut tmp = Vec::new();
                    self.internalize(&mut tmp, node.head, false);
                    let before = out.len();
                    let t = String::from_utf8_lossy(&tmp);
                    out.extend_from_slice(quote_822_local(&t, false).as_bytes());
                    addr_len = out.len() - before;
                }
                ATOM | COMMENT => out.extend_from_slice(&node.text),
                QSTRING => {
                    out.push(b'"');
                    copy_quoted(out, &node.text, b"\"\\\r\n");
                    out.push(b'"');
                }
                DOMLIT => {
                    out.push(b'[');
                    copy_quoted(out, &node.text, b"\\\r\n");
                    out.push(b']');
                }
                STARTGRP => out.push(b':'),
                c => {
                    if c == u32::from(b'<')
                        && node.next.is_some_and(|n| self.n(n).ty == u32::from(b'>'))
                    {
                        addr = Some(i);
                        addr_len = 0;
                    }
                    out.push(c as u8);
                }
            }
            if self.append_space(i) {
                out.push(b' ');
            }
            tp = node.next;
        }
        enforce(out, start, addr, addr_len, warn);
    }
}

fn copy_quoted(out: &mut Vec<u8>, text: &[u8], set: &[u8]) {
    for &c in text {
        if set.contains(&c) {
            out.push(b'\\');
        }
        out.push(c);
    }
}

/// unquote_822_local(): remove quoting from the local part (a routing prefix and the
/// text after the last unquoted '@' are left alone).
pub fn unquote_822_local(mbox: &str) -> String {
    let b = mbox.as_bytes();
    let mut dst: Vec<u8> = Vec::with_capacity(b.len());
    let mut start = 0;
    if b.first() == Some(&b'@')
        && let Some(colon) = mbox.find(':')
    {
        start = colon + 1;
        dst.extend_from_slice(&b[..start]);
    }
    let mut in_quote = false;
    let mut bare_at: Option<(usize, usize)> = None;
    let mut i = start;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            in_quote = !in_quote;
            i += 1;
            continue;
        } else if c == b'@' {
            if !in_quote {
                bare_at = Some((dst.len(), i));
            }
        } else if c == b'\\' {
            if i + 1 >= b.len() {
                i += 1;
                continue;
            }
            i += 1;
        }
        dst.push(b[i]);
        i += 1;
    }
    if let Some((dpos, spos)) = bare_at {
        dst.truncate(dpos);
        dst.extend_from_slice(&b[spos..]);
    }
    String::from_utf8_lossy(&dst).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> String {
        let t = Tree::parse(s.as_bytes());
        let mut out = Vec::new();
        t.externalize_head(&mut out, &mut |_| {});
        String::from_utf8_lossy(&out).into_owned()
    }

    fn addrs(s: &str) -> Vec<String> {
        let t = Tree::parse(s.as_bytes());
        t.addresses()
            .into_iter()
            .map(|a| String::from_utf8_lossy(&t.address_text(a)).into_owned())
            .collect()
    }

    #[test]
    fn finds_addresses() {
        assert_eq!(addrs(" a@b, c@d"), ["a@b", "c@d"]);
        assert_eq!(addrs("Joe User <joe@x.org> (home)"), ["joe@x.org"]);
        // An empty <> holds no address node.
        assert_eq!(addrs("\"a b\"@x, <>"), ["a b@x"]);
        assert_eq!(addrs("friends: a@b, c@d;, e@f"), ["a@b", "c@d", "e@f"]);
        assert_eq!(addrs("a@b c@d"), ["a@b", "c@d"]);
    }

    #[test]
    fn header_form() {
        assert_eq!(head("Joe <joe@x.org>, b@c"), "Joe <joe@x.org>,\nb@c");
        assert_eq!(head("a@b (comment)"), "a@b (comment)");
        assert_eq!(head("\"a b\"@x"), "\"a b\"@x");
        // A missing comma is inserted.
        assert_eq!(head("a@b c@d"), "a@b,\nc@d");
    }

    #[test]
    fn unquote() {
        assert_eq!(unquote_822_local("\"a b\"@x"), "a b@x");
        assert_eq!(unquote_822_local("a\\@b@x"), "a@b@x");
        assert_eq!(unquote_822_local("@r:\"a\"@x"), "@r:a@x");
    }
}
