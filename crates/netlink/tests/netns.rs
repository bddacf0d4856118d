mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{ip_json, rt, BoundNs};
use container_netlink::{with_netns, NetNs, Netlink};

fn mountinfo() -> String {
    // The test thread has its own mount namespace; /proc/self would show the main
    // thread's.
    std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap()
}

#[test]
fn create_bound_then_remove_bound_leaves_no_mount() {
    let iso = container_testkit::isolate().unwrap();
    let path = iso.run_dir().join("netns").join("a");
    let here = NetNs::current().unwrap().id().unwrap();

    let ns = NetNs::create_bound(&path).unwrap();
    assert_eq!(
        NetNs::current().unwrap().id().unwrap(),
        here,
        "caller must not move"
    );
    assert_ne!(ns.id().unwrap(), here, "a new namespace");
    assert_eq!(NetNs::open(&path).unwrap().id().unwrap(), ns.id().unwrap());
    let p = path.to_str().unwrap();
    assert!(mountinfo().contains(p), "bind mount missing");

    NetNs::remove_bound(&path).unwrap();
    assert!(!mountinfo().contains(p), "bind mount left behind");
    assert!(!path.exists(), "mount point file left behind");
    // Idempotent: cleanup may run again after a partial failure.
    NetNs::remove_bound(&path).unwrap();
    // The namespace lives on while a descriptor holds it.
    assert!(ns.id().is_ok());
}

#[test]
fn create_bound_refuses_a_path_already_bound() {
    let iso = container_testkit::isolate().unwrap();
    let path = iso.run_dir().join("netns").join("twice");
    let first = NetNs::create_bound(&path).unwrap();
    let err = NetNs::create_bound(&path).unwrap_err();
    assert!(err.is_exists(), "{err}");
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    // The first namespace is untouched.
    assert_eq!(
        NetNs::open(&path).unwrap().id().unwrap(),
        first.id().unwrap()
    );
    NetNs::remove_bound(&path).unwrap();
}

#[test]
fn create_bound_over_a_stale_empty_file() {
    let iso = container_testkit::isolate().unwrap();
    let path = iso.run_dir().join("stale");
    std::fs::write(&path, b"").unwrap();
    NetNs::create_bound(&path).unwrap();
    NetNs::remove_bound(&path).unwrap();
    assert!(!path.exists());
}

#[test]
fn with_netns_switches_and_always_switches_back() {
    let iso = container_testkit::isolate().unwrap();
    let ns = BoundNs::new(iso.run_dir().join("w"));
    let here = NetNs::current().unwrap().id().unwrap();
    let there = ns.id().unwrap();

    let inside = with_netns(&ns, || NetNs::current().unwrap().id().unwrap()).unwrap();
    assert_eq!(inside, there);
    assert_eq!(NetNs::current().unwrap().id().unwrap(), here);

    let r: Result<(), &str> = with_netns(&ns, || Err("closure failed")).unwrap();
    assert!(r.is_err());
    assert_eq!(NetNs::current().unwrap().id().unwrap(), here);

    let panicked = catch_unwind(AssertUnwindSafe(|| {
        let _ = with_netns(&ns, || panic!("boom"));
    }));
    assert!(panicked.is_err());
    assert_eq!(NetNs::current().unwrap().id().unwrap(), here);
}

#[test]
fn open_rejects_files_that_are_not_network_namespaces() {
    let iso = container_testkit::isolate().unwrap();
    let plain = iso.dir().join("plain");
    std::fs::write(&plain, b"x").unwrap();
    let err = NetNs::open(&plain).unwrap_err().to_string();
    assert!(err.contains("not a namespace file"), "{err}");

    let err = NetNs::open("/proc/thread-self/ns/mnt")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a network namespace"), "{err}");

    let err = NetNs::open(iso.dir().join("missing")).unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn connect_in_acts_inside_the_namespace_only() {
    let iso = container_testkit::isolate().unwrap();
    let path = iso.run_dir().join("inner");
    let ns = BoundNs::new(path.clone());
    rt().block_on(async {
        let here = Netlink::connect().unwrap();
        let there = Netlink::connect_in(&ns).unwrap();
        assert_eq!(there.label(), format!("netns {}", path.display()));

        let names: Vec<String> = there
            .links()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, ["lo"], "a fresh namespace has only loopback");

        let idx = there.create_bridge("cbr-inner", None).await.unwrap();
        assert!(here.link_by_name("cbr-inner").await.unwrap().is_none());
        let br = there.link_by_index(idx).await.unwrap().unwrap();
        assert_eq!(br.name, "cbr-inner");
        let seen = ip_json(Some(&path), &["link", "show", "dev", "cbr-inner"]);
        assert_eq!(seen[0]["ifindex"], idx);
    });
    // The caller never moved.
    assert_ne!(NetNs::current().unwrap().id().unwrap(), ns.id().unwrap());
}

#[test]
fn connect_outside_a_runtime_is_an_error_not_a_panic() {
    let iso = container_testkit::isolate().unwrap();
    let err = Netlink::connect().unwrap_err().to_string();
    assert!(err.contains("runtime"), "{err}");
    let ns = BoundNs::new(iso.run_dir().join("n"));
    assert!(Netlink::connect_in(&ns).is_err());
}
