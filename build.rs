//! Tests that need something outside the project are built as ignored when it is missing,
//! so `cargo test` reports them as ignored instead of passing tests that did not run:
//! PostgreSQL tests run when `LOGDOG_TEST_DATABASE_URL` is set (`cfg(logdog_postgres)`),
//! browser tests when ChromeDriver is installed or `CI` is set, where a missing browser
//! must fail them (`cfg(logdog_browser)`), and S3 tests when `LOGDOG_TEST_WEED` names
//! SeaweedFS's binary or `CI` is set (`cfg(logdog_s3)`).

fn main() {
    println!("cargo:rustc-check-cfg=cfg(logdog_postgres)");
    println!("cargo:rustc-check-cfg=cfg(logdog_browser)");
    println!("cargo:rustc-check-cfg=cfg(logdog_s3)");
    println!("cargo:rerun-if-env-changed=LOGDOG_TEST_WEED");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=LOGDOG_TEST_DATABASE_URL");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("LOGDOG_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        println!("cargo:rustc-cfg=logdog_postgres");
    }
    const CHROMEDRIVER: [&str; 2] = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
    // Installing chromium-driver changes /usr/bin (a missing path would rerun this always).
    println!("cargo:rerun-if-changed=/usr/bin");
    let driver = CHROMEDRIVER
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if driver || std::env::var_os("CI").is_some() {
        println!("cargo:rustc-cfg=logdog_browser");
    }
    // The S3 tests run against SeaweedFS when LOGDOG_TEST_WEED names its binary; CI sets
    // it (and without it they fail there rather than being skipped).
    if std::env::var_os("LOGDOG_TEST_WEED").is_some() || std::env::var_os("CI").is_some() {
        println!("cargo:rustc-cfg=logdog_s3");
    }
}
