//! The image store of `container`, as a library the apiserver drives.
//!
//! * `reference`, `digest`: names of images and content, checked before they become
//!   paths;
//! * `store`: content-addressed blobs, image records and references, unpacked layers
//!   keyed by chain ID, GC and checks (the layout is in `store`'s docs);
//! * `unpack`: the rules for writing a stranger's tar into a layer, and the confined
//!   child (`container-unpack`) that runs them;
//! * `manifest`: manifests, indexes and configs, OCI and Docker, and platforms;
//! * `archive`: `image load` and `image save` (docker-archive, OCI archive and layout);
//! * `registry`: `image pull` from OCI and Docker v2 registries;
//! * `config`: how an image's config and `run`'s flags make a container's process;
//! * `auth`: credentials as Docker keeps them (`~/.docker/config.json`).

pub mod archive;
pub mod auth;
pub mod config;
pub mod digest;
pub mod error;
pub mod import;
pub mod manifest;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use error::ImageError;
pub use reference::Reference;
pub use store::Store;
