//! A throwaway brainpoolP256r1 PKI for tests and the lab: a root, an intermediate, a list
//! signer leaf, and lists signed with it. Owner: helper `ti-pki`.
//!
//! (Interface placeholder on main; the implementation lands from branch `ti-pki`.)
use std::path::Path;
use std::time::SystemTime;

/// A test PKI: root, intermediate, list signer.
pub struct TestPki {}

impl TestPki {
    pub fn generate(_not_before: SystemTime, _not_after: SystemTime) -> TestPki {
        TestPki {}
    }
    pub fn save(&self, _dir: &Path) -> Result<(), String> {
        Err("test PKI not available".into())
    }
    pub fn load(_dir: &Path) -> Result<TestPki, String> {
        Err("test PKI not available".into())
    }
    pub fn tsl_roots_json(&self) -> String {
        String::new()
    }
    pub fn intermediate_der(&self) -> Vec<u8> {
        Vec::new()
    }
    pub fn sign_list(&self, _payload: &serde_json::Value) -> String {
        String::new()
    }
}
