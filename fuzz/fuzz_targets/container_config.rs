//! A container configuration as `container create --config FILE` sends it and as
//! `<root>/containers/<id>/config.json` holds it, and the state file beside it.
//!
//! Properties: nothing panics; what parses saves and loads back unchanged.

#![no_main]

use container_store::container::{ContainerConfig, ContainerState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = serde_json::from_slice::<ContainerConfig>(data) {
        let saved = serde_json::to_vec(&config).expect("a loaded config serializes");
        let loaded: ContainerConfig = serde_json::from_slice(&saved).expect("a saved config loads");
        assert_eq!(config, loaded, "save + load changed the config");
        let _ = container_store::validate_id(container_store::NameKind::Container, &config.id);
        for att in &config.networks {
            let _ = container_store::validate_id(container_store::NameKind::Network, &att.network);
        }
    }
    if let Ok(state) = serde_json::from_slice::<ContainerState>(data) {
        let saved = serde_json::to_vec(&state).expect("a loaded state serializes");
        let loaded: ContainerState = serde_json::from_slice(&saved).expect("a saved state loads");
        assert_eq!(state, loaded, "save + load changed the state");
    }
});
