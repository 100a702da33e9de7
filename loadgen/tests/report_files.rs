//! `write_dir` writes the summary, the CSV timeline and a PNG/SVG chart of the expected size.

mod common;

use tidescale_loadgen::report::CHART_SIZE;
use tidescale_loadgen::{HumanDuration, Load, RunConfig, Schedule, Summary, run};

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR", "first chunk is IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_directory_holds_all_four_files() {
    let server = common::start(None);
    let schedule = Schedule::constant(100.0, HumanDuration::from_secs(2));
    let report = run(
        RunConfig::new(server.url(), Load::Schedule(schedule)),
        std::future::pending(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/report");
    let written = report.write_dir(&out).unwrap();
    assert_eq!(written.len(), 4);

    let summary: Summary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary, report.summary);
    assert_eq!(summary.requests, 200);

    let csv = std::fs::read_to_string(out.join("timeline.csv")).unwrap();
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("second,offered,sent,dropped")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), report.timeline.len());
    assert_eq!(rows[0][1], "100");

    let png = std::fs::read(out.join("timeline.png")).unwrap();
    assert_eq!(png_size(&png), CHART_SIZE);
    assert!(png.ends_with(b"IEND\xaeB`\x82"), "PNG ends with IEND");

    let svg = std::fs::read_to_string(out.join("timeline.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("achieved") && svg.contains("p99"));
    assert!(svg.contains(r#"width="1200""#) && svg.contains(r#"height="900""#));
}
