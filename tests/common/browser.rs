//! A headless Chromium driven through `chromedriver` (W3C WebDriver, JSON over HTTP on
//! loopback), with just the calls the review UI test needs. Chromium only opens the URLs the
//! test gives it (127.0.0.1); every other host name resolves to nothing and background
//! networking is off.
//!
//! Chromium and chromedriver are required: when they are missing the test fails (CI installs
//! the Debian packages `chromium` and `chromium-driver`).
#![allow(dead_code)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Where screenshots go: `$CARGO_TARGET_DIR/test-artifacts/browser`, or
/// `target/test-artifacts/browser` in the crate when the variable is unset.
pub fn artifact_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    base.join("test-artifacts").join("browser")
}

/// The chromedriver process; killed when dropped (also when the session never opened).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A chromedriver process with one browser session.
pub struct Browser {
    driver: Driver,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    step: usize,
}

/// One HTTP/1.1 exchange with chromedriver (Connection: close, JSON body).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to chromedriver");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(payload.as_bytes()).unwrap();
    // chromedriver may keep the connection open: read the head, then exactly the body.
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .expect("read chromedriver answer");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line from chromedriver");
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read chromedriver head");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            if name == "content-length" {
                length = value.parse::<usize>().ok();
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).expect("chunk size");
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16)
                .expect("chunk size");
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).expect("chunk");
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader
            .read_exact(&mut body)
            .expect("read chromedriver body");
    } else {
        reader
            .read_to_end(&mut body)
            .expect("read chromedriver body");
    }
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).expect("JSON from chromedriver")
    };
    (status, value)
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session.
    /// Panics (the test fails) when Chromium or chromedriver is not installed.
    pub fn start() -> Browser {
        let driver_bin = find_in_path("chromedriver").unwrap_or_else(|| {
            panic!(
                "chromedriver is not installed: apt-get install -y --no-install-recommends \
                 chromium chromium-driver (.ci/run does this)"
            )
        });
        let chrome_bin = ["/usr/lib/chromium/chromium"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .or_else(|| find_in_path("chromium"))
            .unwrap_or_else(|| {
                panic!(
                    "chromium is not installed: apt-get install -y --no-install-recommends \
                     chromium chromium-driver (.ci/run does this)"
                )
            });
        let shots = artifact_dir();
        std::fs::create_dir_all(&shots).unwrap();
        let mut driver = Driver(
            Command::new(&driver_bin)
                .arg("--port=0")
                .arg("--allowed-ips=127.0.0.1")
                .arg(format!(
                    "--log-path={}",
                    shots.join("chromedriver.log").display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        // "ChromeDriver was started successfully on port 34739."
        let stdout = driver.0.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("chromedriver ended before it listened")
                .expect("read chromedriver output");
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest
                    .trim_end_matches('.')
                    .trim()
                    .parse::<u16>()
                    .expect("chromedriver port");
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});

        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", profile.path().display()),
            "--no-proxy-server".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".into(),
            "--no-first-run".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--disable-default-apps".into(),
            "--disable-breakpad".into(),
            "--disable-crash-reporter".into(),
            "--window-size=1280,1000".into(),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chrome_bin.to_string_lossy(), "args": args}
        }}});
        let (status, v) = http(port, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "chromedriver refused the session: {v}");
        let session = v["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        Browser {
            driver,
            port,
            session,
            _profile: profile,
            shots,
            step: 0,
        }
    }

    fn call(&self, method: &str, tail: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{tail}", self.session);
        let (status, v) = http(self.port, method, &path, body.as_ref());
        assert_eq!(status, 200, "WebDriver {method} {tail} failed: {v}");
        v["value"].clone()
    }

    /// Opens a URL.
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_string()
    }

    fn try_find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let (status, v) = http(
            self.port,
            "POST",
            &path,
            Some(&json!({"using": "css selector", "value": css})),
        );
        (status == 200).then(|| v["value"][ELEMENT].as_str().unwrap().to_string())
    }

    /// The element a CSS selector names, waiting up to 10 s for it to appear.
    pub fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(id) = self.try_find(css) {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} on {}:\n{}",
                self.url(),
                self.body_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn exists(&self, css: &str) -> bool {
        self.try_find(css).is_some()
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// The rendered text of an element.
    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.call("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The rendered text of the page (empty while no page is loaded or while it is being
    /// replaced by the next one).
    pub fn body_text(&self) -> String {
        let Some(id) = self.try_find("body") else {
            return String::new();
        };
        let path = format!("/session/{}/element/{id}/text", self.session);
        match http(self.port, "GET", &path, None) {
            (200, v) => v["value"].as_str().unwrap_or_default().to_string(),
            _ => String::new(),
        }
    }

    /// Waits up to 10 s for the page text to contain `needle`; returns the text.
    pub fn wait_for_text(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.body_text();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "page {} never showed {needle:?}; it shows:\n{text}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG screenshot of the viewport as `NN-name.png` and prints its path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        self.step += 1;
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("screenshot data"))
            .expect("screenshot base64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "screenshot is a PNG");
        let path = self.shots.join(format!("{:02}-{name}.png", self.step));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            http(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            )
        }));
    }
}
