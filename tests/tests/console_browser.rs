//! The saga console in a real browser: Debian's chromium, driven over
//! WebDriver by chromedriver (both installed by scripts/install-chromium.sh),
//! against the suite. An operator watches an order appear and finish
//! without reloading, opens its timeline, finds a stuck saga through the
//! filter and aborts it; the screenshots of the four pages are written to
//! `CONSOLE_SCREENSHOTS` (by default `console-screenshots` in cargo's
//! temporary folder for tests).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::console::TOKEN;
use e2e::testkit::{eventually, free_port, Identity};
use e2e::Suite;
use events::{CancelReason, OrderStatus};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// How long the browser waits for what a page should come to show.
const WAIT: Duration = Duration::from_secs(30);

/// chromedriver, in a process group of its own with the browsers it
/// starts: all stopped with the test, even one that failed before it could
/// end its session (killing chromedriver alone would leave its chromium).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn program(var: &str, name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(var) {
        return path.into();
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| {
            panic!("no {name} on PATH: run scripts/install-chromium.sh (or set {var})")
        })
}

async fn browser() -> (Driver, Client) {
    let port = free_port();
    let driver = Command::new(program("CHROMEDRIVER", "chromedriver"))
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver(driver);
    let chromium = program("CHROMIUM", "chromium");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let client = eventually("chromedriver to take a session", WAIT, || {
        let capabilities = capabilities.clone();
        let url = url.clone();
        async move {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&url)
                .await
                .ok()
        }
    })
    .await;
    (driver, client)
}

fn screenshots() -> PathBuf {
    let dir = std::env::var_os("CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
    std::fs::create_dir_all(&dir).expect("a folder for the screenshots");
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    let path = screenshots().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("the screenshot written");
    eprintln!("screenshot: {}", path.display());
}

/// The text of the first element `css` finds, once there is one (found
/// again if the page rendered it anew meanwhile, as in [`click`]).
async fn text_of(browser: &Client, css: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let element = browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        match element.text().await {
            Ok(text) => return text,
            Err(e) if e.is_stale_element_reference() && tokio::time::Instant::now() < deadline => {}
            Err(e) => panic!("the text of {css}: {e}"),
        }
    }
}

/// Clicks the element `locator` finds, once there is one. The live
/// overview renders its rows again every half second: an element found
/// just before that is gone by the click, and is looked for again.
async fn click(browser: &Client, locator: Locator<'_>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = browser.wait().at_most(WAIT).for_element(locator).await;
        let Ok(element) = found else {
            screenshot(browser, "failed").await;
            let url = browser.current_url().await.unwrap();
            let page = browser.source().await.unwrap();
            panic!("nothing to click at {locator:?} on {url}:\n{page}");
        };
        match element.click().await {
            Ok(()) => return,
            Err(e) if e.is_stale_element_reference() && tokio::time::Instant::now() < deadline => {}
            Err(e) => panic!("clicking {locator:?}: {e}"),
        }
    }
}

#[tokio::test]
async fn an_operator_watches_an_order_finish_and_aborts_a_stuck_saga_in_a_browser() {
    // Charges are asked again every second, and given up on only after
    // many attempts: with the payment service down, a saga is stuck.
    let mut suite = Suite::start_with(&[
        ("SAGA_STEP_TIMEOUT_MS", "1000"),
        ("SAGA_STEP_MAX_ATTEMPTS", "50"),
    ])
    .await;
    suite
        .seed(
            &[("sku-1", 100, 250), ("sku-2", 40, 1200)],
            &[("c-1", 100_000), ("c-poor", 100)],
        )
        .await;
    // A dead letter for its page: a first restock needs a price.
    suite.client.restock("sku-new", 5, None).await.unwrap();
    let console = suite
        .start_console(Identity::Operator, &[("CONSOLE_OPERATOR_TOKEN", TOKEN)])
        .await;
    let base = format!("http://{console}");
    let (_driver, browser) = browser().await;

    // The overview, live: an order placed now appears and finishes without
    // the page being loaded again (the marker set on it survives).
    browser.goto(&base).await.unwrap();
    eventually("the live stream to be open", WAIT, || async {
        (text_of(&browser, "#live-state").await == "Live.").then_some(())
    })
    .await;
    browser
        .execute("window.stillTheSamePage = true; return true;", vec![])
        .await
        .unwrap();
    suite
        .client
        .place("o-web-1", "c-1", &[("sku-1", 2), ("sku-2", 1)])
        .await
        .unwrap();
    let row = "tr[data-order=\"o-web-1\"] .status";
    eventually("the order to show confirmed", WAIT, || async {
        (text_of(&browser, row).await == "CONFIRMED").then_some(())
    })
    .await;
    // More of the funnel: a few more confirmed, one short of money.
    for i in 2..=6 {
        let id = format!("o-web-{i}");
        suite
            .client
            .place(&id, "c-1", &[("sku-1", 1)])
            .await
            .unwrap();
    }
    suite
        .client
        .place("o-web-poor", "c-poor", &[("sku-2", 1)])
        .await
        .unwrap();
    let poor = "tr[data-order=\"o-web-poor\"] .status";
    eventually("the poor order to show cancelled", WAIT, || async {
        (text_of(&browser, poor).await == "CANCELLED").then_some(())
    })
    .await;
    eventually("every order to show finished", WAIT, || async {
        (text_of(&browser, "[data-live=\"in_flight\"]").await == "0").then_some(())
    })
    .await;
    let same = browser
        .execute("return window.stillTheSamePage === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!(true), "the page was reloaded");
    assert_eq!(text_of(&browser, "[data-live=\"confirmed\"]").await, "6");
    let reasons = text_of(&browser, "[data-live=\"cancelled\"]").await;
    assert!(reasons.contains("insufficient_funds"), "{reasons}");
    screenshot(&browser, "overview").await;

    // Its timeline, one click away.
    click(&browser, Locator::LinkText("o-web-1")).await;
    assert_eq!(text_of(&browser, "h1").await, "Order o-web-1");
    let bars = browser
        .find_all(Locator::Css("svg.timeline rect.bar"))
        .await
        .unwrap();
    assert_eq!(bars.len(), 4, "reserve, charge, commit, confirm");
    screenshot(&browser, "saga").await;

    // A stuck saga, found through the filter.
    suite.stop_service("payment-service").await;
    suite
        .client
        .place("o-web-stuck", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    suite.stuck(1).await;
    click(&browser, Locator::LinkText("Sagas")).await;
    click(&browser, Locator::LinkText("Stuck")).await;
    let listed = browser
        .find_all(Locator::Css("table.sagas tbody tr"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "only the stuck saga");
    screenshot(&browser, "sagas").await;
    click(&browser, Locator::LinkText("o-web-stuck")).await;

    // Aborted as operator: signed in, asked to confirm, done.
    click(&browser, Locator::LinkText("Sign in as operator")).await;
    let token = browser.find(Locator::Id("token")).await.unwrap();
    token.send_keys(TOKEN).await.unwrap();
    click(&browser, Locator::Css("form.sign-in button[type=submit]")).await;
    click(&browser, Locator::LinkText("Abort…")).await;
    assert_eq!(text_of(&browser, "h1").await, "Abort order o-web-stuck?");
    click(&browser, Locator::Css("form.confirm button[type=submit]")).await;
    assert!(
        text_of(&browser, ".notice").await.starts_with("Abort sent"),
        "no notice of the abort"
    );
    suite.start_service("payment-service").await;
    let order = suite.settled("o-web-stuck").await;
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.reason, Some(CancelReason::AbortedByOperator));
    // Its timeline: the attempts at the charge, the abort, the
    // compensations.
    browser.refresh().await.unwrap();
    let marks = browser
        .find_all(Locator::Css("svg.timeline line.mark"))
        .await
        .unwrap();
    assert_eq!(marks.len(), 1, "the operator's abort");
    let compensations = browser
        .find_all(Locator::Css("svg.timeline rect.compensation"))
        .await
        .unwrap();
    assert!(!compensations.is_empty(), "the compensations are drawn");
    screenshot(&browser, "saga-aborted").await;

    // The dead letters.
    click(&browser, Locator::LinkText("Dead letters")).await;
    let letter = text_of(&browser, "table.letters tbody tr").await;
    assert!(letter.contains("inventory.cmd.restock"), "{letter}");
    screenshot(&browser, "dead-letters").await;

    // Readable on a phone: nothing wider than the screen but the tables
    // and the timeline, which scroll inside their own box.
    browser.set_window_size(390, 844).await.unwrap();
    browser.goto(&base).await.unwrap();
    let overflow = browser
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&browser, "overview-phone").await;
    assert_eq!(overflow, json!(true), "the overview is wider than a phone");

    browser.close().await.unwrap();
    suite.stop().await;
}
