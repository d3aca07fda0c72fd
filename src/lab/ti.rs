//! The lab's TI-Messenger profile (`LabOptions::ti`): a throwaway brainpool PKI that signs the
//! federation list (`crate::ti::testpki`), the list file the guard reads, and the guard's
//! `[ti]` section.
//!
//! Files in `DIR/ti/`: `tsl_roots.json` and `intermediate.der` (the guard's trust anchors),
//! `signer/` (the test PKI, so tests can sign further lists), `federation-list.jws` (the
//! guard's `list_file`) and `state/` (the guard's `state_dir`).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use toml_edit::{value, Array, ArrayOfTables, Item, Table};

use super::LabError;
use crate::ti::testpki::TestPki;

/// The TI part of the lab's guard config.
#[derive(Debug, Clone)]
pub struct LabTi {
    pub dir: PathBuf,
    pub protected_server_name: String,
    pub admin_url: String,
    pub admin_token_file: PathBuf,
    pub client_listen: SocketAddr,
}

impl LabTi {
    pub fn list_file(&self) -> PathBuf {
        self.dir.join(LIST_FILE)
    }
}

/// The list file in `DIR/ti/`.
pub const LIST_FILE: &str = "federation-list.jws";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The domain of a lab server name (`127.0.0.2:PORT` → `127.0.0.2`).
fn domain(server_name: &str) -> String {
    crate::ti::list::domain_of(server_name)
}

/// Writes the test PKI and a first list (version 1) with both lab servers on it.
pub fn write_lab_ti(
    lab_dir: &Path,
    hs1_name: &str,
    hs2_name: &str,
    admin_url: &str,
    admin_token_file: &Path,
    client_listen: SocketAddr,
) -> Result<LabTi, LabError> {
    let dir = lab_dir.join("ti");
    std::fs::create_dir_all(dir.join("state")).map_err(io(&dir))?;
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    let pki = TestPki::generate(now - day, now + 30 * day);
    pki.save(&dir.join("signer"))
        .map_err(|e| LabError::Setup(format!("TI test PKI: {e}")))?;
    let roots = dir.join("tsl_roots.json");
    std::fs::write(&roots, pki.tsl_roots_json()).map_err(io(&roots))?;
    let inter = dir.join("intermediate.der");
    std::fs::write(&inter, pki.intermediate_der()).map_err(io(&inter))?;
    write_list(
        lab_dir,
        1,
        &[(domain(hs1_name), false), (domain(hs2_name), false)],
    )?;
    Ok(LabTi {
        dir,
        protected_server_name: hs1_name.to_owned(),
        admin_url: admin_url.to_owned(),
        admin_token_file: admin_token_file.to_path_buf(),
        client_listen,
    })
}

/// The list payload for `(domain, isInsurance)` pairs.
pub fn payload(version: u64, domains: &[(String, bool)]) -> Value {
    json!({
        "version": version,
        "domainList": domains.iter().enumerate().map(|(i, (d, ins))| json!({
            "domain": d,
            "telematikID": format!("9-LAB-{i}"),
            "isInsurance": ins,
            "timAnbieter": null,
        })).collect::<Vec<_>>(),
    })
}

/// Signs a new list with the lab's test PKI and replaces `DIR/ti/federation-list.jws`
/// atomically; returns the file.
pub fn write_list(
    lab_dir: &Path,
    version: u64,
    domains: &[(String, bool)],
) -> Result<PathBuf, LabError> {
    let dir = lab_dir.join("ti");
    let pki = TestPki::load(&dir.join("signer"))
        .map_err(|e| LabError::Setup(format!("TI test PKI: {e}")))?;
    let jws = pki.sign_list(&payload(version, domains));
    let file = dir.join(LIST_FILE);
    let tmp = dir.join(format!("{LIST_FILE}.tmp"));
    std::fs::write(&tmp, jws).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &file).map_err(io(&file))?;
    Ok(file)
}

/// The guard's `[ti]` section.
pub fn ti_table(t: &LabTi) -> Table {
    let mut ti = Table::new();
    ti["variant"] = value("pro");
    ti["tsl_roots"] = value(t.dir.join("tsl_roots.json").display().to_string());
    let mut inter = Array::new();
    inter.push(t.dir.join("intermediate.der").display().to_string());
    ti["intermediates"] = value(inter);
    ti["list_file"] = value(t.list_file().display().to_string());
    ti["state_dir"] = value(t.dir.join("state").display().to_string());
    // Short intervals: tests change the list and users' permission configs while it runs.
    ti["refresh_interval_secs"] = value(2);
    ti["miss_refetch_secs"] = value(1);
    ti["permission_cache_secs"] = value(1);
    let mut hs = Table::new();
    hs["server_name"] = value(t.protected_server_name.clone());
    hs["admin_url"] = value(t.admin_url.clone());
    hs["admin_token_file"] = value(t.admin_token_file.display().to_string());
    hs["client_listen"] = value(t.client_listen.to_string());
    hs["client_upstream"] = value(t.admin_url.clone());
    let mut homeservers = ArrayOfTables::new();
    homeservers.push(hs);
    ti["homeserver"] = Item::ArrayOfTables(homeservers);
    ti
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_signed_later_verify_with_the_anchors_written_at_start() {
        // `lab up` writes the PKI; a test process signs further lists with the saved signer.
        let dir = tempfile::tempdir().unwrap();
        let t = write_lab_ti(
            dir.path(),
            "127.0.0.1:8448",
            "127.0.0.2:8449",
            "http://127.0.0.1:8008",
            &dir.path().join("admin.token"),
            "127.0.0.1:9000".parse().unwrap(),
        )
        .unwrap();
        let anchors = crate::ti::pki::TrustAnchors::load(
            &t.dir.join("tsl_roots.json"),
            &[t.dir.join("intermediate.der")],
        )
        .unwrap();
        let now = std::time::SystemTime::now();
        let first = std::fs::read(t.list_file()).unwrap();
        let l = crate::ti::jws::verify_list(&first, &anchors, now).unwrap();
        assert_eq!(l.version, 1);
        assert!(l.lookup("127.0.0.1:1").is_some() && l.lookup("127.0.0.2").is_some());
        write_list(dir.path(), 2, &[("127.0.0.1".into(), true)]).unwrap();
        let second = std::fs::read(t.list_file()).unwrap();
        let l = crate::ti::jws::verify_list(&second, &anchors, now).unwrap();
        assert_eq!(l.version, 2);
        assert!(l.lookup("127.0.0.2:8449").is_none());
        assert!(l.lookup("127.0.0.1").unwrap().is_insurance);
        // The signer's key is not world-readable.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(t.dir.join("signer/leaf.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }
}
