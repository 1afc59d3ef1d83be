//! A real browser through the emulator's Admin Portal stand-in: headless Chromium, driven over
//! the W3C WebDriver protocol by Debian's ChromeDriver, opens a minted SSO link, fills in and
//! submits the form, presses "Test sign-in" and lands on the success URL, while a WatchSetup
//! stream opened beforehand receives `connection.activated`.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use portal_gateway::proto::{
    self, Intent, SetupState, WatchSetupRequest, generate_link_request, watch_setup_request,
};
use serde_json::{Value, json};

use crate::helpers::{repo_root, spawn_app, wait_until};

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// ChromeDriver on a free loopback port, stopped on drop.
struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
    session: Option<String>,
    profile: std::path::PathBuf,
}

impl Driver {
    async fn start() -> Self {
        let status = Command::new(repo_root().join("scripts/ensure-browser.sh"))
            .status()
            .expect("run scripts/ensure-browser.sh");
        assert!(
            status.success(),
            "Chromium and ChromeDriver are not installed"
        );
        // ChromeDriver takes a port, not a listener: find a free one and hand it over.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let status = format!("{url}/status");
        let probe = http.clone();
        wait_until(|| {
            let probe = probe.clone();
            let status = status.clone();
            async move {
                let Ok(answer) = probe.get(&status).send().await else {
                    return false;
                };
                let body: Value = answer.json().await.unwrap_or_default();
                body["value"]["ready"] == true
            }
        })
        .await;
        let profile = crate::helpers::temp_path("chromium-profile");
        Self {
            child,
            url,
            http,
            session: None,
            profile,
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("webdriver call");
        let status = answer.status();
        let body: Value = answer.json().await.expect("webdriver json");
        assert!(status.is_success(), "webdriver {path}: {status} {body}");
        body["value"].clone()
    }

    async fn open_session(&mut self) {
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1024,900".to_owned(),
            format!("--user-data-dir={}", self.profile.display()),
        ];
        let binary = which("chromium");
        let session = self
            .send(
                reqwest::Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": binary, "args": args},
                }}})),
            )
            .await;
        self.session = Some(session["sessionId"].as_str().expect("session").to_owned());
        // A click that submits a form may return before the next page is there: finding an
        // element waits for it (up to 5 s) instead of failing at once.
        self.send(
            reqwest::Method::POST,
            &self.session_path("/timeouts"),
            Some(json!({"implicit": 5000})),
        )
        .await;
    }

    /// Waits (polling, up to 5 s) until the browser is at a URL starting with `prefix`.
    async fn wait_for_url(&self, prefix: &str) -> bool {
        for _ in 0..100 {
            if self.current_url().await.starts_with(prefix) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn session_path(&self, path: &str) -> String {
        format!(
            "/session/{}{path}",
            self.session.as_deref().expect("session")
        )
    }

    async fn go(&self, url: &str) {
        self.send(
            reqwest::Method::POST,
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        )
        .await;
    }

    async fn current_url(&self) -> String {
        let value = self
            .send(reqwest::Method::GET, &self.session_path("/url"), None)
            .await;
        value.as_str().expect("url").to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let value = self
            .send(
                reqwest::Method::POST,
                &self.session_path("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        value[ELEMENT].as_str().expect("element").to_owned()
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.send(
            reqwest::Method::POST,
            &self.session_path(&format!("/element/{element}/click")),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.send(
            reqwest::Method::POST,
            &self.session_path(&format!("/element/{element}/value")),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn title(&self) -> String {
        let value = self
            .send(reqwest::Method::GET, &self.session_path("/title"), None)
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Saves a PNG of the page under `target/browser-artifacts/` (never committed).
    async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let value = self
            .send(
                reqwest::Method::GET,
                &self.session_path("/screenshot"),
                None,
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("base64"))
            .expect("png");
        let dir = repo_root().join("target/browser-artifacts");
        std::fs::create_dir_all(&dir).expect("artifact dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn which(program: &str) -> String {
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .expect("sh");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn an_admin_sets_up_sso_in_a_real_browser_and_the_watch_sees_it() {
    let app = spawn_app().await;
    let org = app
        .emulator
        .create_organization(json!({"name": "Browser Co", "external_id": "browser-co"}))
        .await;
    let id = org["id"].as_str().expect("id").to_owned();
    let mut watch = app
        .setup
        .clone()
        .watch_setup(WatchSetupRequest {
            organization: Some(watch_setup_request::Organization::OrganizationId(
                id.clone(),
            )),
            intents: vec![Intent::Sso as i32],
            resume_cursor: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let snapshot = watch.message().await.expect("snapshot").expect("open");
    assert_eq!(snapshot.intents[0].state(), SetupState::NotStarted);

    let success_url = format!("{}/portal/exit?finished=sso", app.emulator.url);
    let link = app
        .portal
        .clone()
        .generate_link(proto::GenerateLinkRequest {
            organization: Some(generate_link_request::Organization::OrganizationId(
                id.clone(),
            )),
            intent: Intent::Sso as i32,
            success_url: success_url.clone(),
            ..Default::default()
        })
        .await
        .expect("link")
        .into_inner()
        .portal_link
        .expect("link")
        .link;

    let mut browser = Driver::start().await;
    browser.open_session().await;
    browser.go(&link).await;
    browser.find("#sso-form").await;
    browser.screenshot("sso-form").await;
    browser.click("#provider option[value='OktaSAML']").await;
    browser
        .type_into("#metadata-url", "https://idp.example.com/app/metadata.xml")
        .await;
    browser.click("#submit").await;
    browser.click("#test-sign-in").await;
    let arrived = browser.wait_for_url(&success_url).await;
    if !arrived {
        browser.screenshot("sso-unexpected").await;
    }
    assert!(
        arrived,
        "lands on the success URL, not {}",
        browser.current_url().await
    );
    assert!(browser.title().await.contains("Admin Portal closed"));
    browser.screenshot("sso-done").await;

    let event = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("an event within 10 s")
            .expect("no error")
            .expect("open");
        if let Some(event) = &message.event
            && event.name == "connection.activated"
        {
            break message;
        }
    };
    assert_eq!(event.intents[0].state(), SetupState::Complete);
    let status = app
        .setup
        .clone()
        .get_setup_status(proto::GetSetupStatusRequest {
            organization: Some(proto::get_setup_status_request::Organization::ExternalId(
                "browser-co".into(),
            )),
            intents: vec![Intent::Sso as i32],
        })
        .await
        .expect("status")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(status.intents[0].state(), SetupState::Complete);
    assert_eq!(status.connections[0].connection_type, "OktaSAML");
}
