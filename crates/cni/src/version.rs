//! The spec versions this plugin speaks. Result shapes differ between 0.x (an `ips`
//! entry carries `version`) and 1.x; 1.1.0 adds STATUS, GC and route/interface fields.

pub const SUPPORTED: &[&str] = &["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V031,
    V040,
    V100,
    V110,
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        Some(match s {
            "0.3.1" => Version::V031,
            "0.4.0" => Version::V040,
            "1.0.0" => Version::V100,
            "1.1.0" => Version::V110,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V031 => "0.3.1",
            Version::V040 => "0.4.0",
            Version::V100 => "1.0.0",
            Version::V110 => "1.1.0",
        }
    }

    /// Results of 0.3.x and 0.4.0 name each address's family (`"version": "4"`).
    pub fn ips_carry_version(self) -> bool {
        self < Version::V100
    }
}
