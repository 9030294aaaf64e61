use chopin_core::json;
use serde::Deserialize;
#[derive(Debug, Deserialize)]
struct Tree(#[allow(dead_code)] Vec<Tree>);

fn probe<T: serde::de::DeserializeOwned>(name: &str, objects: bool) {
    for depth in [50usize, 100, 128, 150, 200, 254, 255, 256, 300] {
        let doc = if objects {
            format!("{}null{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        } else {
            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
        };
        // 2 MiB, like test threads and tokio workers; measure in a child thread
        let ok = std::thread::Builder::new().stack_size(2 << 20).spawn(move || {
            json::from_slice::<T>(doc.as_bytes()).map(|_| ()).map_err(|e| e.to_string())
        }).unwrap().join().unwrap();
        eprintln!("{name} objects={objects} depth={depth}: {:?}", ok.map_err(|e| e.chars().take(60).collect::<String>()));
    }
}
#[test]
fn probe_value_arrays() { probe::<serde_json::Value>("Value", false); }
#[test]
fn probe_value_objects() { probe::<serde_json::Value>("Value", true); }
#[test]
fn probe_tree() { probe::<Tree>("Tree", false); }
