//! Layers built byte by byte, hostile ones included: `tar::Builder` refuses `..` in
//! names, so headers are written raw.

#![allow(dead_code)]

use std::io::Write;

pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

fn header(name: &[u8], kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.name[..name.len()].copy_from_slice(name);
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }
    pub fn dir(mut self, name: &str, mode: u32) -> Layer {
        let h = header(name.as_bytes(), tar::EntryType::Directory, 0, mode);
        self.b.append(&h, std::io::empty()).unwrap();
        self
    }
    pub fn file(self, name: &str, data: &[u8]) -> Layer {
        self.file_mode(name, data, 0o644)
    }
    pub fn file_mode(mut self, name: &str, data: &[u8], mode: u32) -> Layer {
        let h = header(
            name.as_bytes(),
            tar::EntryType::Regular,
            data.len() as u64,
            mode,
        );
        self.b.append(&h, data).unwrap();
        self
    }
    pub fn owned(mut self, name: &str, data: &[u8], uid: u64, gid: u64) -> Layer {
        let mut h = header(
            name.as_bytes(),
            tar::EntryType::Regular,
            data.len() as u64,
            0o640,
        );
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }
    fn link(mut self, name: &str, target: &str, kind: tar::EntryType) -> Layer {
        let mut h = header(name.as_bytes(), kind, 0, 0o777);
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.linkname[..target.len()].copy_from_slice(target.as_bytes());
        }
        h.set_cksum();
        self.b.append(&h, std::io::empty()).unwrap();
        self
    }
    pub fn symlink(self, name: &str, target: &str) -> Layer {
        self.link(name, target, tar::EntryType::Symlink)
    }
    pub fn hardlink(self, name: &str, target: &str) -> Layer {
        self.link(name, target, tar::EntryType::Link)
    }
    pub fn special(mut self, name: &str, kind: tar::EntryType) -> Layer {
        let mut h = header(name.as_bytes(), kind, 0, 0o600);
        h.set_device_major(8).unwrap();
        h.set_device_minor(0).unwrap();
        h.set_cksum();
        self.b.append(&h, std::io::empty()).unwrap();
        self
    }
    /// A file with PAX xattrs.
    pub fn with_xattrs(mut self, name: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> Layer {
        let pax: Vec<(String, Vec<u8>)> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.to_vec()))
            .collect();
        self.b
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .unwrap();
        self.file(name, data)
    }
    pub fn tar(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
    pub fn gzip(self) -> Vec<u8> {
        gzip(&self.tar())
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// The unpacker binary of this crate.
pub fn unpacker() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_container-unpack"))
}
