mod common;

use common::{has_flag, ip_link, mac_str, rt, BoundNs};
use container_netlink::{Error, MacvlanMode, NetNs, Netlink};

#[test]
fn bridge_create_up_delete() {
    let _iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let nl = Netlink::connect().unwrap();
        let idx = nl.create_bridge("cbr-n1", Some(1400)).await.unwrap();

        let br = nl.link_by_name("cbr-n1").await.unwrap().unwrap();
        assert_eq!(br.index, idx);
        assert_eq!(br.kind.as_deref(), Some("bridge"));
        assert_eq!(br.mtu, 1400);
        assert!(!br.up, "created down");
        assert_eq!(nl.link_by_index(idx).await.unwrap().unwrap(), br);

        nl.set_up(idx).await.unwrap();
        assert!(nl.link_by_index(idx).await.unwrap().unwrap().up);
        let seen = ip_link(None, "cbr-n1", true);
        assert!(has_flag(&seen, "UP"), "{seen}");
        assert_eq!(seen["mtu"], 1400);
        assert_eq!(seen["linkinfo"]["info_kind"], "bridge");

        nl.set_down(idx).await.unwrap();
        assert!(!nl.link_by_index(idx).await.unwrap().unwrap().up);

        nl.delete_link(idx).await.unwrap();
        assert!(nl.link_by_name("cbr-n1").await.unwrap().is_none());
        assert!(nl.link_by_index(idx).await.unwrap().is_none());
        assert!(
            !nl.delete_link_by_name("cbr-n1").await.unwrap(),
            "absent is fine"
        );

        let err = nl.delete_link(idx).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(
            err.to_string(),
            format!("link index {idx}: delete: No such device (os error 19)")
        );
    });
}

#[test]
fn duplicate_bridge_error_names_the_link() {
    let _iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let nl = Netlink::connect().unwrap();
        nl.create_bridge("cbr-n1", None).await.unwrap();
        let err = nl.create_bridge("cbr-n1", None).await.unwrap_err();
        assert!(err.is_exists());
        assert_eq!(err.errno(), Some(libc::EEXIST));
        assert_eq!(
            err.to_string(),
            "link cbr-n1: create bridge: File exists (os error 17)"
        );
        assert!(nl.delete_link_by_name("cbr-n1").await.unwrap());
    });
}

#[test]
fn invalid_names_are_refused_before_the_kernel() {
    let _iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let nl = Netlink::connect().unwrap();
        let err = nl
            .create_bridge("a-name-that-is-too-long", None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("a-name-that-is-too-long"), "{err}");
        assert!(nl.create_bridge("a/b", None).await.is_err());
        assert!(nl.links().await.unwrap().iter().all(|l| l.name == "lo"));
    });
}

#[test]
fn errors_on_existing_links_name_them() {
    let _iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let nl = Netlink::connect().unwrap();
        let here = NetNs::current().unwrap();
        let idx = nl
            .create_veth("vx0", "vx1", &here, None, None)
            .await
            .unwrap();
        let err = nl.set_mtu(idx, 70000).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("link vx0 (index {idx}): set mtu 70000: Invalid argument (os error 22)")
        );
        let err = nl.set_mtu(999_999, 1400).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "link index 999999: set mtu 1400: No such device (os error 19)"
        );
        let err = nl.rename(idx, "vx1").await.unwrap_err();
        assert!(err.is_exists(), "{err}");
        assert_eq!(
            err.to_string(),
            format!("link vx0 (index {idx}): rename to vx1: File exists (os error 17)")
        );
    });
}

#[test]
fn veth_peer_is_born_in_the_other_namespace() {
    let iso = container_testkit::isolate().unwrap();
    let path = iso.run_dir().join("netns").join("peer");
    let ns = BoundNs::new(path.clone());
    let mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
    rt().block_on(async {
        let nl = Netlink::connect().unwrap();
        let here = NetNs::current().unwrap();
        // An "eth0" here does not matter: the peer's name is only ever checked in `ns`.
        nl.create_veth("eth0", "eth0-p", &here, None, None)
            .await
            .unwrap();

        let idx = nl
            .create_veth("vh0", "eth0", &ns, Some(1450), Some(mac))
            .await
            .unwrap();
        let host = nl.link_by_index(idx).await.unwrap().unwrap();
        assert_eq!(host.name, "vh0");
        assert_eq!(host.kind.as_deref(), Some("veth"));
        assert_eq!(host.mtu, 1450);
        assert!(!host.up);
        assert_ne!(host.mac, Some(mac));

        let inner = Netlink::connect_in(&ns).unwrap();
        let peer = inner.link_by_name("eth0").await.unwrap().unwrap();
        assert_eq!(peer.kind.as_deref(), Some("veth"));
        assert_eq!(peer.mtu, 1450);
        assert_eq!(peer.mac, Some(mac));
        assert_eq!(
            host.parent,
            Some(peer.index),
            "IFLA_LINK points at the peer"
        );
        assert!(nl.link_by_name("eth0").await.unwrap().unwrap().index != peer.index);

        let seen = ip_link(Some(&path), "eth0", false);
        assert_eq!(seen["address"], mac_str(&mac));
        assert_eq!(seen["mtu"], 1450);

        // Deleting one end removes the pair, across namespaces.
        nl.delete_link(idx).await.unwrap();
        assert!(inner.link_by_name("eth0").await.unwrap().is_none());
    });
}

#[test]
fn macvlan_in_every_mode_created_in_another_namespace() {
    let iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let nl = Netlink::connect().unwrap();
        let here = NetNs::current().unwrap();
        let parent = nl
            .create_veth("mvp0", "mvp1", &here, None, None)
            .await
            .unwrap();
        nl.set_up(parent).await.unwrap();

        let modes = [
            (MacvlanMode::Bridge, "bridge"),
            (MacvlanMode::Private, "private"),
            (MacvlanMode::Vepa, "vepa"),
        ];
        for (i, (mode, word)) in modes.into_iter().enumerate() {
            let path = iso.run_dir().join(format!("mv{i}"));
            let ns = BoundNs::new(path.clone());
            let mac = [0x02, 0, 0, 0, 0x10, i as u8];
            nl.create_macvlan("eth1", parent, mode, Some(&ns), Some(mac), Some(1400))
                .await
                .unwrap();
            assert!(nl.link_by_name("eth1").await.unwrap().is_none(), "{mode:?}");

            let inner = Netlink::connect_in(&ns).unwrap();
            let mv = inner.link_by_name("eth1").await.unwrap().unwrap();
            assert_eq!(mv.kind.as_deref(), Some("macvlan"), "{mode:?}");
            assert_eq!(mv.mac, Some(mac), "{mode:?}");
            assert_eq!(mv.mtu, 1400, "{mode:?}");
            assert_eq!(mv.parent, Some(parent), "{mode:?}");
            let seen = ip_link(Some(&path), "eth1", true);
            assert_eq!(seen["linkinfo"]["info_data"]["mode"], word, "{seen}");
        }

        // Passthru must be alone on its parent and takes the parent's MAC.
        let pt_parent = nl
            .create_veth("ptp0", "ptp1", &here, None, None)
            .await
            .unwrap();
        let pt_mac = nl.link_by_index(pt_parent).await.unwrap().unwrap().mac;
        let path = iso.run_dir().join("mv-pt");
        let ns = BoundNs::new(path.clone());
        nl.create_macvlan(
            "eth1",
            pt_parent,
            MacvlanMode::Passthru,
            Some(&ns),
            None,
            None,
        )
        .await
        .unwrap();
        let inner = Netlink::connect_in(&ns).unwrap();
        let mv = inner.link_by_name("eth1").await.unwrap().unwrap();
        assert_eq!(mv.mac, pt_mac);
        let seen = ip_link(Some(&path), "eth1", true);
        assert_eq!(seen["linkinfo"]["info_data"]["mode"], "passthru", "{seen}");

        // Without a namespace the macvlan is made right here.
        let err = nl
            .create_macvlan("mvx", pt_parent, MacvlanMode::Bridge, None, None, None)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("link mvx: create macvlan"),
            "{err}"
        );
        nl.create_macvlan("mvx", parent, MacvlanMode::Bridge, None, None, None)
            .await
            .unwrap();
        let mvx = nl.link_by_name("mvx").await.unwrap().unwrap();
        assert_eq!(mvx.kind.as_deref(), Some("macvlan"));
    });
}

#[test]
fn move_to_netns_renames_and_keeps_mac_and_mtu() {
    let iso = container_testkit::isolate().unwrap();
    let path = iso.run_dir().join("netns").join("ctr");
    let ns = BoundNs::new(path.clone());
    let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01];
    rt().block_on(async {
        let nl = Netlink::connect().unwrap();
        let here = NetNs::current().unwrap();
        // The target name is taken here; a move-then-rename in two steps would collide.
        nl.create_veth("eth0", "eth0-p", &here, None, None)
            .await
            .unwrap();

        let idx = nl
            .create_veth("hostdev0", "hostdev0-p", &here, None, None)
            .await
            .unwrap();
        nl.set_mtu(idx, 1380).await.unwrap();
        nl.set_mac(idx, mac).await.unwrap();
        nl.set_up(idx).await.unwrap();
        nl.add_address(idx, "10.66.0.5/24".parse().unwrap())
            .await
            .unwrap();
        nl.add_address(idx, "fd00:66::5/64".parse().unwrap())
            .await
            .unwrap();
        let keep: Vec<_> = nl
            .addresses(idx)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.permanent && a.scope == container_netlink::AddrScope::Universe)
            .collect();
        assert_eq!(keep.len(), 2, "{keep:?}");

        nl.move_to_netns(idx, &ns, Some("eth0")).await.unwrap();
        assert!(nl.link_by_name("hostdev0").await.unwrap().is_none());
        assert!(
            nl.link_by_name("eth0").await.unwrap().is_some(),
            "ours untouched"
        );

        let inner = Netlink::connect_in(&ns).unwrap();
        let moved = inner.link_by_name("eth0").await.unwrap().unwrap();
        assert_eq!(moved.mac, Some(mac));
        assert_eq!(moved.mtu, 1380);
        assert!(!moved.up, "the kernel brings a moved link down");
        assert!(
            inner.addresses(moved.index).await.unwrap().is_empty(),
            "the kernel drops addresses on a move"
        );
        for a in &keep {
            inner.add_address(moved.index, a.address).await.unwrap();
        }
        inner.set_up(moved.index).await.unwrap();
        let now: Vec<_> = inner
            .addresses(moved.index)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.address)
            .collect();
        for a in &keep {
            assert!(now.contains(&a.address), "{now:?}");
        }
        let seen = ip_link(Some(&path), "eth0", false);
        assert_eq!(seen["address"], mac_str(&mac));
        assert_eq!(seen["mtu"], 1380);

        // A name taken in the target refuses the move and leaves the link as it was.
        let idx1 = nl
            .create_veth("hostdev1", "hostdev1-p", &here, None, None)
            .await
            .unwrap();
        let err = nl.move_to_netns(idx1, &ns, Some("eth0")).await.unwrap_err();
        assert!(err.is_exists(), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("link hostdev1 (index {idx1}): move to netns ")),
            "{msg}"
        );
        assert!(msg.contains("as eth0"), "{msg}");
        // The kernel had moved it before the rename failed; it must be back, as it was.
        let back = nl.link_by_index(idx1).await.unwrap().unwrap();
        assert_eq!(back.name, "hostdev1");
        assert!(inner.link_by_name("hostdev1").await.unwrap().is_none());

        // The old name being taken in the target is no obstacle to a renaming move.
        let host_eth0 = nl.link_by_name("eth0").await.unwrap().unwrap();
        nl.move_to_netns(host_eth0.index, &ns, Some("eth9"))
            .await
            .unwrap();
        let eth9 = inner.link_by_name("eth9").await.unwrap().unwrap();
        assert_eq!(eth9.mac, host_eth0.mac);

        // Without a new name the link keeps its own.
        nl.move_to_netns(idx1, &ns, None).await.unwrap();
        assert!(inner.link_by_name("hostdev1").await.unwrap().is_some());
    });
}

#[test]
fn master_rename_mac_and_listing() {
    let _iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let nl = Netlink::connect().unwrap();
        let here = NetNs::current().unwrap();
        let br = nl.create_bridge("cbr-m", None).await.unwrap();
        let port = nl
            .create_veth("vp0", "vp1", &here, None, None)
            .await
            .unwrap();

        nl.set_master(port, br).await.unwrap();
        assert_eq!(
            nl.link_by_index(port).await.unwrap().unwrap().master,
            Some(br)
        );
        assert_eq!(ip_link(None, "vp0", false)["master"], "cbr-m");
        nl.set_nomaster(port).await.unwrap();
        assert_eq!(nl.link_by_index(port).await.unwrap().unwrap().master, None);

        let err = nl.set_master(port, 999_999).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "link vp0 (index {port}): attach to link index 999999"
            )),
            "{err}"
        );

        nl.rename(port, "vp0-new").await.unwrap();
        assert_eq!(
            nl.link_by_index(port).await.unwrap().unwrap().name,
            "vp0-new"
        );

        let mac = [0x02, 1, 2, 3, 4, 5];
        nl.set_mac(port, mac).await.unwrap();
        assert_eq!(ip_link(None, "vp0-new", false)["address"], mac_str(&mac));

        let links = nl.links().await.unwrap();
        let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
        for want in ["lo", "cbr-m", "vp0-new", "vp1"] {
            assert!(names.contains(&want), "{names:?}");
        }
        let lo = links.iter().find(|l| l.name == "lo").unwrap();
        assert_eq!(lo.kind, None);
        assert!(lo.up);
    });
}

/// The CNI plugin's bridge keys: promiscuity on a bridge, hairpin on a port; and the
/// owner mark of a created link, which the kernel drops from a create request, so it is
/// set right after (a link the product made without it was never known as its own).
#[test]
fn promisc_hairpin_and_alias_reach_the_kernel() {
    let _iso = container_testkit::isolate().unwrap();
    rt().block_on(async {
        let nl = Netlink::connect().unwrap();
        let br = nl.create_bridge("cbr-keys", None).await.unwrap();
        let here = NetNs::current().unwrap();
        let port = nl
            .create_owned_veth("vkeys0", "vkeys1", &here, None, None, Some("owner-a"))
            .await
            .unwrap();
        let alias = |l: Option<container_netlink::LinkInfo>| l.unwrap().alias;
        assert_eq!(
            alias(nl.link_by_index(port).await.unwrap()).as_deref(),
            Some("owner-a")
        );
        let owned = nl
            .create_owned_bridge("cbr-owned", None, Some("owner-b"))
            .await
            .unwrap();
        assert_eq!(
            alias(nl.link_by_index(owned).await.unwrap()).as_deref(),
            Some("owner-b")
        );
        nl.set_alias(port, "container-cni/n/c/eth0").await.unwrap();
        assert_eq!(
            nl.link_by_index(port)
                .await
                .unwrap()
                .unwrap()
                .alias
                .as_deref(),
            Some("container-cni/n/c/eth0")
        );
        nl.set_master(port, br).await.unwrap();
        nl.set_hairpin(port, true).await.unwrap();
        nl.set_promisc(br, true).await.unwrap();
        let seen = ip_link(None, "vkeys0", true);
        assert_eq!(
            seen["linkinfo"]["info_slave_data"]["hairpin"], true,
            "{seen}"
        );
        assert_eq!(ip_link(None, "cbr-keys", true)["promiscuity"], 1);
        nl.set_hairpin(port, false).await.unwrap();
        nl.set_promisc(br, false).await.unwrap();
        let seen = ip_link(None, "vkeys0", true);
        assert_eq!(
            seen["linkinfo"]["info_slave_data"]["hairpin"], false,
            "{seen}"
        );
        assert_eq!(ip_link(None, "cbr-keys", true)["promiscuity"], 0);
        let err = nl.set_hairpin(br + 1000, true).await.unwrap_err();
        assert!(err.to_string().contains("set hairpin true"), "{err}");
    });
}

/// `disable_ipv6` acts in the namespace it is given, whatever namespace the caller is
/// in: the same name on both sides of a veth is two interfaces. Once up, the one with
/// IPv6 off has no link-local address, so it never solicits; the other has one.
#[test]
fn ipv6_is_turned_off_on_one_link_of_the_namespace_given() {
    let iso = container_testkit::isolate().unwrap();
    let ns = BoundNs::new(iso.run_dir().join("netns").join("v6"));
    rt().block_on(async {
        let nl = Netlink::connect().unwrap();
        let here = NetNs::current().unwrap();
        let host = nl
            .create_veth("eth0", "eth0", &ns, None, None)
            .await
            .unwrap();
        let inner = Netlink::connect_in(&ns).unwrap();
        let peer = inner.link_by_name("eth0").await.unwrap().unwrap();

        container_netlink::disable_ipv6(&ns, "eth0").unwrap();
        let read = |ns: &NetNs| {
            container_netlink::with_netns(ns, || {
                std::fs::read_to_string("/proc/thread-self/net/if_inet6").unwrap()
            })
            .unwrap()
        };
        nl.set_up(host).await.unwrap();
        inner.set_up(peer.index).await.unwrap();
        // The kernel adds the link-local address as the link comes up: wait for it
        // on the side that keeps IPv6, then look at the other.
        let mut tries = 0;
        while !read(&here).contains("fe80") {
            tries += 1;
            assert!(tries < 200, "no link-local address on the host end");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let inside = read(&ns);
        assert!(!inside.contains("fe80"), "{inside}");
        let off = container_netlink::with_netns(&ns, || {
            std::fs::read_to_string("/proc/sys/net/ipv6/conf/eth0/disable_ipv6").unwrap()
        })
        .unwrap();
        assert_eq!(off.trim(), "1");

        let err = container_netlink::disable_ipv6(&ns, "nosuch0").unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(err.to_string().starts_with("link nosuch0 in "), "{err}");
        let err = container_netlink::disable_ipv6(&ns, "../all").unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
    });
}
