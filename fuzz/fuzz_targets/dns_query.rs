//! A packet at a network's DNS port (issue 13), as the helper's name server decides on
//! it: answered from a table, refused, forwarded, or dropped.
//!
//! Properties: nothing panics; an answer is itself a parsable DNS message no bigger than
//! plain UDP allows, carrying the query's id.

#![no_main]

use container_network_helper::dns::{answer, Scope, Table, Verdict};
use container_protocol::network::NameEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut table = Table::default();
    table.replace(vec![NameEntry {
        container_id: "web".into(),
        names: vec!["web".into(), "www".into()],
        addresses: vec!["10.1.0.2".parse().unwrap(), "fd01::2".parse().unwrap()],
    }]);
    let subnets: [ipnet::IpNet; 2] = ["10.1.0.0/24".parse().unwrap(), "fd01::/64".parse().unwrap()];
    for forward in [true, false] {
        let scope = Scope {
            subnets: &subnets,
            forward,
        };
        for (source, udp) in [("10.1.0.9", true), ("fd01::9", false), ("192.0.2.1", true)] {
            if let Verdict::Reply(bytes) = answer(data, source.parse().unwrap(), &table, &scope, udp) {
                assert!(!udp || bytes.len() <= 512, "an answer too big for UDP");
                assert_eq!(bytes.get(..2), data.get(..2), "an answer with another id");
                assert!(
                    hickory_proto::op::Message::from_vec(&bytes).is_ok(),
                    "an answer that does not parse"
                );
            }
        }
    }
});
