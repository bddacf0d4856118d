//! One query in, one verdict out: answered from the network's names, refused, or to be
//! forwarded upstream. Pure (no sockets, no clock), so the fuzz target drives exactly
//! what a packet at port 53 reaches. The bytes are untrusted: hickory-proto parses
//! them (compression loops, lengths and labels are its checks), and anything it rejects
//! is dropped without an answer, which gives a spoofed source nothing to amplify.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ipnet::IpNet;

use super::fast;
use super::table::Table;
use container_protocol::network::DNS_DOMAIN;

/// Answers are never cached for long: a container that restarts at a new address must
/// not be looked for at its old one.
pub const TTL: u32 = 0;

/// Plain DNS over UDP without EDNS carries at most this much (RFC 1035).
pub(super) const UDP_LIMIT: usize = 512;

/// What the network says about the query's sender and its own reach.
pub struct Scope<'a> {
    /// Only senders on the network learn its names.
    pub subnets: &'a [IpNet],
    /// An internal network has no way out, for names either.
    pub forward: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not ours: ask the host's resolvers, with the query's own bytes.
    Forward,
    /// Not a query worth an answer (garbage, a response, nothing to say).
    Drop,
}

/// Decides what to do with `packet` from `source`; `udp` limits the answer's size.
pub fn answer(packet: &[u8], source: IpAddr, table: &Table, scope: &Scope, udp: bool) -> Verdict {
    if let Some(v) = fast::answer(packet, source, table, scope, udp) {
        return v;
    }
    general(packet, source, table, scope, udp)
}

/// The decision with hickory-proto parsing and encoding every byte: for every packet
/// the fast path leaves, and the reference it is tested against.
fn general(packet: &[u8], source: IpAddr, table: &Table, scope: &Scope, udp: bool) -> Verdict {
    let Ok(query) = Message::from_vec(packet) else {
        return Verdict::Drop;
    };
    if query.message_type() != MessageType::Query {
        return Verdict::Drop;
    }
    let refuse = |code| reply(&error(&query, code), udp);
    if !scope.subnets.iter().any(|s| s.contains(&source)) {
        return refuse(ResponseCode::Refused);
    }
    if query.op_code() != OpCode::Query {
        return refuse(ResponseCode::NotImp);
    }
    let [q] = query.queries() else {
        return refuse(ResponseCode::FormErr);
    };
    let name = q.name().to_lowercase();
    let qtype = q.query_type();
    let mut out = error(&query, ResponseCode::NoError);
    out.set_authoritative(true);
    if qtype == RecordType::PTR {
        match reverse(&name, table, scope) {
            Some(Some(target)) => {
                out.add_answer(Record::from_rdata(
                    q.name().clone(),
                    TTL,
                    RData::PTR(PTR(target)),
                ));
                return reply(&out, udp);
            }
            Some(None) => {
                out.set_response_code(ResponseCode::NXDomain);
                return reply(&out, udp);
            }
            None => {}
        }
    } else if let Some(short) = local_part(&dotted(&name)) {
        match table.lookup(short) {
            Some(addrs) => {
                for ip in addrs {
                    let rdata = match (ip, qtype) {
                        (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(*v4)),
                        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => {
                            RData::AAAA(AAAA(*v6))
                        }
                        _ => continue,
                    };
                    out.add_answer(Record::from_rdata(q.name().clone(), TTL, rdata));
                }
                // A name without an address of the asked family: no records, no error.
                return reply(&out, udp);
            }
            // Our own domain is ours alone: nobody upstream knows it.
            None if in_domain(&dotted(&name)) => {
                out.set_response_code(ResponseCode::NXDomain);
                return reply(&out, udp);
            }
            None => {}
        }
    }
    if scope.forward && query.recursion_desired() {
        Verdict::Forward
    } else {
        refuse(ResponseCode::Refused)
    }
}

/// A name's text as [`local_part`] and [`in_domain`] take it: without the trailing dot.
fn dotted(name: &Name) -> String {
    let mut text = name.to_ascii();
    if text.ends_with('.') {
        text.pop();
    }
    text
}

/// The name as the table keys it (lowercase, without our search domain), if it could be
/// one of ours; `text` is the lowercase name without its trailing dot.
pub(super) fn local_part(text: &str) -> Option<&str> {
    let short = text
        .strip_suffix(DNS_DOMAIN)
        .and_then(|s| s.strip_suffix('.'))
        .unwrap_or(text);
    (!short.is_empty()).then_some(short)
}

pub(super) fn in_domain(text: &str) -> bool {
    text == DNS_DOMAIN
        || text
            .strip_suffix(DNS_DOMAIN)
            .is_some_and(|s| s.ends_with('.'))
}

/// `Some(Some(name))`: an address of ours; `Some(None)`: in our subnets but nobody's;
/// `None`: not ours to say (someone else's address, or not an arpa name).
fn reverse(name: &Name, table: &Table, scope: &Scope) -> Option<Option<Name>> {
    let net = name.parse_arpa_name().ok()?;
    if net.prefix_len() != net.max_prefix_len() {
        return None;
    }
    let ip = net.addr();
    match table.reverse(&ip) {
        Some(owner) => Some(Name::from_ascii(format!("{owner}.{DNS_DOMAIN}.")).ok()),
        None if scope.subnets.iter().any(|s| s.contains(&ip)) => Some(None),
        None => None,
    }
}

/// An answer skeleton: the query's id, question and recursion flag.
fn error(query: &Message, code: ResponseCode) -> Message {
    let mut out = Message::new();
    out.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(code);
    for q in query.queries().iter().take(1) {
        out.add_query(q.clone());
    }
    out
}

fn reply(msg: &Message, udp: bool) -> Verdict {
    let Ok(bytes) = msg.to_vec() else {
        return Verdict::Drop;
    };
    if udp && bytes.len() > UDP_LIMIT {
        // Too big for plain UDP: say so, and the client asks again over TCP.
        let mut cut = msg.clone();
        cut.take_answers();
        cut.set_truncated(true);
        return cut.to_vec().map(Verdict::Reply).unwrap_or(Verdict::Drop);
    }
    Verdict::Reply(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use container_protocol::network::NameEntry;
    use hickory_proto::op::Query;

    fn table() -> Table {
        let mut t = Table::default();
        t.replace(vec![NameEntry {
            container_id: "web".into(),
            names: vec!["web".into(), "www".into()],
            addresses: vec!["10.1.0.2".parse().unwrap(), "fd01::2".parse().unwrap()],
        }]);
        t
    }

    fn ask(name: &str, qtype: RecordType, from: &str, forward: bool) -> (Verdict, Option<Message>) {
        let mut m = Message::new();
        m.set_id(7).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        let subnets: Vec<IpNet> = vec!["10.1.0.0/24".parse().unwrap()];
        let scope = Scope {
            subnets: &subnets,
            forward,
        };
        let bytes = m.to_vec().unwrap();
        let v = answer(&bytes, from.parse().unwrap(), &table(), &scope, true);
        same_as_general(&bytes, from.parse().unwrap(), &table(), &scope, true);
        let parsed = match &v {
            Verdict::Reply(b) => Some(Message::from_vec(b).unwrap()),
            _ => None,
        };
        (v, parsed)
    }

    #[test]
    fn names_and_aliases_answer_in_both_forms() {
        for name in ["web.", "WWW.", "web.dns.container."] {
            let (_, m) = ask(name, RecordType::A, "10.1.0.9", true);
            let m = m.unwrap();
            assert_eq!(m.id(), 7);
            assert_eq!(m.answers().len(), 1, "{name}");
            assert_eq!(m.answers()[0].ttl(), 0);
        }
        let (_, m) = ask("web.", RecordType::AAAA, "10.1.0.9", true);
        assert_eq!(m.unwrap().answers().len(), 1);
    }

    #[test]
    fn strangers_are_refused_and_others_forwarded() {
        let (_, m) = ask("web.", RecordType::A, "10.2.0.9", true);
        assert_eq!(m.unwrap().response_code(), ResponseCode::Refused);
        let (v, _) = ask("example.org.", RecordType::A, "10.1.0.9", true);
        assert_eq!(v, Verdict::Forward);
        let (_, m) = ask("example.org.", RecordType::A, "10.1.0.9", false);
        assert_eq!(m.unwrap().response_code(), ResponseCode::Refused);
        let (_, m) = ask("gone.dns.container.", RecordType::A, "10.1.0.9", true);
        assert_eq!(m.unwrap().response_code(), ResponseCode::NXDomain);
    }

    #[test]
    fn reverse_lookups_name_the_owner() {
        let (_, m) = ask("2.0.1.10.in-addr.arpa.", RecordType::PTR, "10.1.0.9", true);
        let m = m.unwrap();
        assert_eq!(m.answers().len(), 1);
        let (_, m) = ask("3.0.1.10.in-addr.arpa.", RecordType::PTR, "10.1.0.9", true);
        assert_eq!(m.unwrap().response_code(), ResponseCode::NXDomain);
        let (v, _) = ask("1.1.1.1.in-addr.arpa.", RecordType::PTR, "10.1.0.9", true);
        assert_eq!(v, Verdict::Forward);
    }

    #[test]
    fn garbage_is_dropped() {
        let scope = Scope {
            subnets: &[],
            forward: true,
        };
        let t = table();
        for bad in [
            &b""[..],
            b"\x00",
            b"\x00\x07\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
        ] {
            assert_eq!(
                answer(bad, "10.1.0.9".parse().unwrap(), &t, &scope, true),
                Verdict::Drop
            );
        }
    }

    /// The stable stand-in for the `dns_query` fuzz target: mutations of valid queries
    /// (bytes flipped, cut, repeated) never panic, and every answer parses and keeps the
    /// query's id.
    #[test]
    fn mutated_queries_survive() {
        let t = table();
        let subnets: Vec<IpNet> = vec!["10.1.0.0/24".parse().unwrap()];
        let scope = Scope {
            subnets: &subnets,
            forward: true,
        };
        let mut seeds = Vec::new();
        for (name, qtype) in [
            ("web.", RecordType::A),
            ("www.dns.container.", RecordType::AAAA),
            ("2.0.1.10.in-addr.arpa.", RecordType::PTR),
            ("example.org.", RecordType::ANY),
        ] {
            let mut m = Message::new();
            m.set_id(0x4242).set_recursion_desired(true);
            m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
            seeds.push(m.to_vec().unwrap());
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let mut p = seeds[round % seeds.len()].clone();
            for _ in 0..(next() % 6) {
                let i = (next() as usize) % p.len().max(1);
                match next() % 4 {
                    0 if !p.is_empty() => p[i] = next() as u8,
                    1 => p.truncate(i),
                    2 => {
                        let tail = p[i.min(p.len())..].to_vec();
                        p.extend_from_slice(&tail);
                    }
                    _ if p.len() > 13 => p[12] = 0xc0 | (next() as u8 & 0x3f),
                    _ => {}
                }
            }
            same_as_general(&p, "10.1.0.9".parse().unwrap(), &t, &scope, true);
            if let Verdict::Reply(b) = answer(&p, "10.1.0.9".parse().unwrap(), &t, &scope, true) {
                assert!(b.len() <= UDP_LIMIT);
                assert_eq!(b.get(..2), p.get(..2));
                assert!(Message::from_vec(&b).is_ok());
            }
        }
    }

    /// Whatever the fast path answers, the general way answers the same (compared
    /// parsed: the two may compress names differently).
    fn same_as_general(p: &[u8], from: IpAddr, t: &Table, scope: &Scope, udp: bool) -> bool {
        let Some(quick) = fast::answer(p, from, t, scope, udp) else {
            return false;
        };
        match (&quick, general(p, from, t, scope, udp)) {
            (Verdict::Reply(a), Verdict::Reply(b)) => {
                let (a, b) = (
                    Message::from_vec(a).unwrap(),
                    Message::from_vec(&b).unwrap(),
                );
                assert_eq!(a, b, "{p:02x?}");
                // Eq on names ignores case: the question's own spelling comes back.
                assert_eq!(
                    a.queries()[0].name().to_ascii(),
                    b.queries()[0].name().to_ascii()
                );
            }
            (q, g) => assert_eq!(*q, g, "{p:02x?}"),
        }
        true
    }

    /// The queries a container's resolver sends take the fast path, and it answers them
    /// as the general way does; what it must not judge (strangers, EDNS, odd names and
    /// classes, the root) it leaves.
    #[test]
    fn fast_path_takes_the_common_queries_and_agrees() {
        let t = table();
        let subnets: Vec<IpNet> = vec!["10.1.0.0/24".parse().unwrap()];
        let scope = Scope {
            subnets: &subnets,
            forward: true,
        };
        let from: IpAddr = "10.1.0.9".parse().unwrap();
        let wire = |name: &str, qtype: RecordType, edit: &dyn Fn(&mut Message)| {
            let mut m = Message::new();
            m.set_id(0x1234).set_recursion_desired(true);
            m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
            edit(&mut m);
            m.to_vec().unwrap()
        };
        let plain = |_: &mut Message| {};
        for (name, qtype) in [
            ("web.", RecordType::A),
            ("WeB.", RecordType::A),
            ("www.dns.container.", RecordType::A),
            ("web.DNS.container.", RecordType::AAAA),
            ("web.", RecordType::ANY),
            ("nobody.dns.container.", RecordType::A),
            ("dns.container.", RecordType::A),
            ("2.0.1.10.in-addr.arpa.", RecordType::PTR),
            ("3.0.1.10.IN-ADDR.arpa.", RecordType::PTR),
        ] {
            let p = wire(name, qtype, &plain);
            assert!(
                same_as_general(&p, from, &t, &scope, true),
                "{name} {qtype}"
            );
            assert!(
                same_as_general(&p, from, &t, &scope, false),
                "{name} {qtype}"
            );
        }
        let no_rd = wire("web.", RecordType::A, &|m| {
            m.set_recursion_desired(false);
        });
        assert!(same_as_general(&no_rd, from, &t, &scope, true));
        let ad = wire("web.", RecordType::A, &|m| {
            m.set_authentic_data(true).set_checking_disabled(true);
        });
        assert!(same_as_general(&ad, from, &t, &scope, true));

        // Left to the general way.
        let stranger: IpAddr = "10.2.0.9".parse().unwrap();
        let edns = wire("web.", RecordType::A, &|m| {
            m.set_edns(hickory_proto::op::Edns::new());
        });
        let mut chaos = wire("web.", RecordType::A, &plain);
        let n = chaos.len();
        chaos[n - 1] = 3;
        let mut trailing = wire("web.", RecordType::A, &plain);
        trailing.push(0);
        // A label hickory prints escaped (`\-web`); from_ascii refuses to make one.
        let mut dash = wire("xweb.", RecordType::A, &plain);
        dash[13] = b'-';
        for (p, src) in [
            (wire("web.", RecordType::A, &plain), stranger),
            (edns, from),
            (chaos, from),
            (trailing, from),
            (wire("example.org.", RecordType::A, &plain), from),
            (wire(".", RecordType::A, &plain), from),
            (dash, from),
            (wire("web.", RecordType::MX, &plain), from),
            (wire("1.1.1.1.in-addr.arpa.", RecordType::PTR, &plain), from),
            (wire("1.10.in-addr.arpa.", RecordType::PTR, &plain), from),
            (
                wire(
                    "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.d.f.ip6.arpa.",
                    RecordType::PTR,
                    &plain,
                ),
                from,
            ),
        ] {
            assert!(
                fast::answer(&p, src, &t, &scope, true).is_none(),
                "{p:02x?}"
            );
        }
    }
}
