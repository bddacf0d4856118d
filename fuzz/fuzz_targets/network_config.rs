//! A network record as read from `<root>/networks/<name>.json`, then every check the
//! network helper makes on it without touching the host.
//!
//! Properties: nothing panics; a record that parses serializes back to one that parses
//! to the same value (what the apiserver saves, it can load).

#![no_main]

use container_network_helper::plugins;
use container_store::NetworkConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut config) = serde_json::from_slice::<NetworkConfig>(data) else {
        return;
    };
    let saved = serde_json::to_vec(&config).expect("a loaded record serializes");
    let loaded: NetworkConfig = serde_json::from_slice(&saved).expect("a saved record loads");
    assert_eq!(config, loaded, "save + load changed the record");

    // `cni` reads the conflist the options name: a fuzzer must not make it read
    // arbitrary files of this machine (the `cni_conflist` target covers the parser).
    config.options.remove("conflist");
    let _ = container_store::validate_id(container_store::NameKind::Network, &config.id);
    if plugins::validate(&config).is_ok() {
        let _ = plugins::bridge_name(&config);
        let _ = plugins::range_sets(&config);
        let _ = plugins::gateway_addresses(&config);
    }
    let _ = plugins::bridge::derive_name(&config.id);
});
