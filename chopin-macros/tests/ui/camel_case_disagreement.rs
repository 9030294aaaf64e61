use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Post {
    id: i64,
    _draft_note: String,
}

fn main() {}
