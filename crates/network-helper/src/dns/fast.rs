//! The common query answered from its bytes: one question of A, AAAA, ANY or PTR (IPv4)
//! in class IN, no other records, a name of plain hostname labels, from a sender on the
//! network. That is what a container's stub resolver sends, and nearly every packet the
//! server sees; parsing it into a `Message` and encoding one back cost more than the
//! rest of a query's work, allocations above all.
//!
//! Anything else, or any doubt, is `None`: [`super::answer`] decides it the general way,
//! with hickory-proto parsing every byte. So this path only ever says what the general
//! one says for the same packet (the unit tests check that on every query they make and
//! on mutations of them), and never sees garbage it would have to judge.

use std::net::{IpAddr, Ipv4Addr};

use super::answer::{in_domain, local_part, Scope, Verdict, TTL, UDP_LIMIT};
use super::table::Table;
use container_protocol::network::DNS_DOMAIN;

const HEADER: usize = 12;
/// Wire form of a name at most (RFC 1035), and so of its dotted text plus one.
const NAME_MAX: usize = 255;

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_AAAA: u16 = 28;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;

/// RFC 1035's code for a name that does not exist.
const NXDOMAIN: u8 = 3;

pub fn answer(
    packet: &[u8],
    source: IpAddr,
    table: &Table,
    scope: &Scope,
    udp: bool,
) -> Option<Verdict> {
    let header = packet.get(..HEADER)?;
    // A query (QR 0), opcode QUERY, not authoritative, not truncated; RD either way.
    // Of the second flags byte only AD and CD may be set (dig sets AD).
    if header[2] & 0xfe != 0 || header[3] & !0x30 != 0 {
        return None;
    }
    // One question, nothing else (an EDNS query carries an OPT record: the general way).
    if header[4..12] != [0, 1, 0, 0, 0, 0, 0, 0] {
        return None;
    }
    if !scope.subnets.iter().any(|s| s.contains(&source)) {
        return None;
    }
    let mut text = [0u8; NAME_MAX + 1];
    let (name_end, text_len) = read_name(packet, &mut text)?;
    let rest = packet.get(name_end..)?;
    if rest.len() != 4 {
        return None;
    }
    let qtype = u16::from_be_bytes([rest[0], rest[1]]);
    if u16::from_be_bytes([rest[2], rest[3]]) != CLASS_IN {
        return None;
    }
    // ASCII by construction (read_name admits hostname bytes only).
    let text = std::str::from_utf8(&text[..text_len]).ok()?;
    let question = &packet[HEADER..];
    let mut out = Reply::new(header, question);
    match qtype {
        TYPE_PTR => {
            let ip = IpAddr::V4(arpa_v4(text)?);
            match table.reverse(&ip) {
                Some(owner) => out.ptr(owner)?,
                None if scope.subnets.iter().any(|s| s.contains(&ip)) => out.rcode(NXDOMAIN),
                None => return None,
            }
        }
        TYPE_A | TYPE_AAAA | TYPE_ANY => {
            let short = local_part(text)?;
            match table.lookup(short) {
                Some(addrs) => {
                    for ip in addrs {
                        match (ip, qtype) {
                            (IpAddr::V4(v4), TYPE_A | TYPE_ANY) => out.record(TYPE_A, &v4.octets()),
                            (IpAddr::V6(v6), TYPE_AAAA | TYPE_ANY) => {
                                out.record(TYPE_AAAA, &v6.octets())
                            }
                            _ => {}
                        }
                    }
                }
                None if in_domain(text) => out.rcode(NXDOMAIN),
                None => return None,
            }
        }
        _ => return None,
    }
    let bytes = out.finish();
    // Too big for plain UDP: the general way truncates it.
    if udp && bytes.len() > UDP_LIMIT {
        return None;
    }
    Some(Verdict::Reply(bytes))
}

/// Reads the question's name at offset 12 into `text`, lowercase and dotted, without
/// the trailing dot; returns where the name ends in the packet and the text's length.
/// Only labels hickory would print as they are (letters, digits, `_`, and `-` past a
/// label's first byte), no compression, not the root name: else `None`.
fn read_name(packet: &[u8], text: &mut [u8; NAME_MAX + 1]) -> Option<(usize, usize)> {
    let mut at = HEADER;
    let mut len = 0;
    loop {
        let n = *packet.get(at)? as usize;
        at += 1;
        if n == 0 {
            break;
        }
        // Compression pointers and the extended label types start with a high bit.
        if n > 63 {
            return None;
        }
        let label = packet.get(at..at + n)?;
        if len > 0 {
            text[len] = b'.';
            len += 1;
        }
        if len + n > NAME_MAX - 1 {
            return None;
        }
        for (i, &b) in label.iter().enumerate() {
            if !(b.is_ascii_alphanumeric() || b == b'_' || (b == b'-' && i > 0)) {
                return None;
            }
            text[len] = b.to_ascii_lowercase();
            len += 1;
        }
        at += n;
    }
    // The wire form (labels, their lengths, the root) within 255 bytes.
    if len == 0 || at - HEADER > NAME_MAX {
        return None;
    }
    Some((at, len))
}

/// `d.c.b.a.in-addr.arpa` (lowercase, no trailing dot) as `a.b.c.d`; anything else,
/// a shorter prefix included, is the general way's to judge.
fn arpa_v4(text: &str) -> Option<Ipv4Addr> {
    let digits = text.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut labels = digits.split('.');
    for o in octets.iter_mut().rev() {
        *o = labels.next()?.parse().ok()?;
    }
    if labels.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

/// An answer in wire form: the query's header and question, then records whose owner
/// is a pointer to the question's name.
struct Reply {
    bytes: Vec<u8>,
    answers: u16,
}

impl Reply {
    fn new(header: &[u8], question: &[u8]) -> Reply {
        let mut bytes = Vec::with_capacity(HEADER + question.len() + 4 * 28);
        bytes.extend_from_slice(&header[..2]);
        // QR, AA, the query's RD; RA; NOERROR until said otherwise.
        bytes.push(0x80 | 0x04 | (header[2] & 0x01));
        bytes.push(0x80);
        bytes.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(question);
        Reply { bytes, answers: 0 }
    }

    fn rcode(&mut self, code: u8) {
        self.bytes[3] = 0x80 | code;
    }

    fn record(&mut self, rtype: u16, rdata: &[u8]) {
        // The owner: a pointer to offset 12, the question's name.
        self.bytes.extend_from_slice(&[0xc0, 0x0c]);
        self.bytes.extend_from_slice(&rtype.to_be_bytes());
        self.bytes.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.bytes.extend_from_slice(&TTL.to_be_bytes());
        self.bytes
            .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.bytes.extend_from_slice(rdata);
        self.answers += 1;
    }

    /// PTR to `<owner>.dns.container.`, if the owner is made of plain labels.
    fn ptr(&mut self, owner: &str) -> Option<()> {
        let mut rdata = [0u8; NAME_MAX];
        let mut len = 0;
        for label in owner.split('.').chain(DNS_DOMAIN.split('.')) {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .enumerate()
                    .all(|(i, b)| b.is_ascii_alphanumeric() || b == b'_' || (b == b'-' && i > 0));
            if !ok || len + 1 + label.len() >= NAME_MAX {
                return None;
            }
            rdata[len] = label.len() as u8;
            rdata[len + 1..len + 1 + label.len()].copy_from_slice(label.as_bytes());
            len += 1 + label.len();
        }
        rdata[len] = 0;
        self.record(TYPE_PTR, &rdata[..len + 1]);
        Some(())
    }

    fn finish(mut self) -> Vec<u8> {
        self.bytes[6..8].copy_from_slice(&self.answers.to_be_bytes());
        self.bytes
    }
}
