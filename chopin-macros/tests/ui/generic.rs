use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    items: Vec<T>,
    total: i64,
}

fn main() {}
